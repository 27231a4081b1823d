"""What the tests and the benchmark share and the wheel does not ship: synthetic Ring data,
servers and stubs that speak each platform's wire format, and the CLI run as a subprocess."""
