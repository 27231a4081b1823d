// The map: one circle marker per agency from data/map.json (see bot/site.py map_points).
// Every value from the data is set with textContent, never parsed as HTML.
"use strict";
(function () {
  var element = document.getElementById("map");
  if (!element || typeof L === "undefined") {
    return;
  }
  var state = element.dataset.state;
  var root = element.dataset.root;

  function escapeHtml(text) {
    // Leaflet writes attributions as HTML; ours is plain text from the config.
    var span = document.createElement("span");
    span.textContent = text;
    return span.innerHTML;
  }

  function add(parent, tag, text, className) {
    var child = document.createElement(tag);
    if (text !== undefined) {
      child.textContent = text;
    }
    if (className) {
      child.className = className;
    }
    parent.appendChild(child);
    return child;
  }

  function popup(row, columns) {
    var value = function (name) { return row[columns.indexOf(name)]; };
    var box = document.createElement("div");
    var title = add(box, "strong");
    var link = add(title, "a", value("name"));
    link.href = root + "agencies/" + value("page") + ".html";
    var place = [value("city"), value("state")].filter(Boolean).join(", ");
    if (place) {
      add(box, "div", place);
    }
    add(box, "div", "Active since " + (value("active_date") || "(not given)"));
    if (value("video_requests") !== null) {
      add(box, "div", "Video requests: " + value("video_requests"));
    }
    if (value("profile_url")) {
      var profile = add(add(box, "div"), "a", "Ring profile");
      profile.href = value("profile_url");
      profile.rel = "noopener noreferrer nofollow";
    }
    return box;
  }

  function legend(years) {
    var box = document.getElementById("legend");
    if (!box) {
      return;
    }
    add(box, "span", "Year joined:", "legend-title");
    years.forEach(function (item) {
      var entry = add(box, "span", undefined, "legend-item");
      var swatch = add(entry, "span", undefined, "swatch");
      swatch.style.backgroundColor = item.colour;
      add(entry, "span", String(item.year));
    });
  }

  var map = L.map(element, { scrollWheelZoom: false, worldCopyJump: true, zoomSnap: 0.25 });
  map.setView([39.5, -98.35], 4);
  // Third-party tiles only when the site opts in ([site] tiles): each one is a request
  // that tells the tile server the reader's address.
  if (element.dataset.tiles) {
    L.tileLayer(element.dataset.tiles, {
      maxZoom: 18,
      attribution: escapeHtml(element.dataset.attribution),
    }).addTo(map);
  }
  // The base layer: the bundled Census state outlines, in a pane below the markers.
  map.createPane("outlines").style.zIndex = 350;
  map.attributionControl.addAttribution("State outlines: US Census Bureau");
  fetch(element.dataset.outlines)
    .then(function (response) {
      if (!response.ok) {
        throw new Error("state outlines: HTTP " + response.status);
      }
      return response.json();
    })
    .then(function (outlines) {
      var layer = L.geoJSON(outlines, {
        pane: "outlines",
        renderer: L.svg({ pane: "outlines" }),
        interactive: false,
        style: {
          color: "#8d8574", weight: 1, fillColor: "#f3efe6", fillOpacity: 1,
          className: "state-outline",
        },
      }).addTo(map);
      element.dataset.states = String(layer.getLayers().length);
    })
    .catch(function (error) {
      console.warn(error);
    });
  element.classList.add("map-ready");

  fetch(element.dataset.points)
    .then(function (response) {
      if (!response.ok) {
        throw new Error("map data: HTTP " + response.status);
      }
      return response.json();
    })
    .then(function (data) {
      var columns = data.columns;
      var at = function (name) { return columns.indexOf(name); };
      var markers = [];
      data.agencies.forEach(function (row) {
        if (state && row[at("state")] !== state) {
          return;
        }
        var marker = L.circleMarker([row[at("lat")], row[at("lon")]], {
          radius: 5,
          weight: 1,
          color: "#333333",
          fillColor: data.years[row[at("year")]].colour,
          fillOpacity: 0.9,
          className: "agency-marker",
        });
        marker.bindPopup(function () { return popup(row, columns); });
        markers.push(marker);
      });
      L.featureGroup(markers).addTo(map);
      // Frame the contiguous states when they hold markers: Alaska and Hawaii would
      // otherwise shrink the rest to a strip. Their markers are there, a pan away.
      var mainland = markers.filter(function (marker) {
        var at = marker.getLatLng();
        return at.lat > 24 && at.lat < 50 && at.lng > -125 && at.lng < -66;
      });
      var framed = mainland.length ? mainland : markers;
      if (framed.length) {
        map.fitBounds(L.featureGroup(framed).getBounds(), {
          padding: [24, 24], maxZoom: 10, animate: false,
        });
      }
      legend(data.years);
      element.dataset.markers = String(markers.length);
    })
    .catch(function (error) {
      add(element.parentNode, "p", "The map's data could not be loaded (" + error.message + ").", "error");
      console.warn(error);
    });
})();
