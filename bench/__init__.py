"""The ringwatch benchmark: `python -m bench` (from the repository root).

It measures the poll cycle against the floor of reading the same bytes and parsing them with
lxml, peak memory, database growth, a Telegram broadcast against a local Bot API stub, and
`ringwatch --help`. Every figure that matters is a ratio taken within one run, because the
machines it runs on are shared and noisy. See README.md, "Performance".
"""
