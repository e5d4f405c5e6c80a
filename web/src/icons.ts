// Inline SVG icons (24×24, currentColor), decorative: the button around one carries the label.

const PATHS = {
  play: "M8 5.5v13a1 1 0 0 0 1.5.86l10.2-6.5a1 1 0 0 0 0-1.72L9.5 4.64A1 1 0 0 0 8 5.5Z",
  pause: "M7 5h3.5v14H7zM13.5 5H17v14h-3.5z",
  next: "M6 6.2v11.6a.8.8 0 0 0 1.23.67L15.5 13v4.8h2.5V6.2h-2.5V11L7.23 5.53A.8.8 0 0 0 6 6.2Z",
  previous: "M18 6.2v11.6a.8.8 0 0 1-1.23.67L8.5 13v4.8H6V6.2h2.5V11l8.27-5.47A.8.8 0 0 1 18 6.2Z",
  heart:
    "M12 20.3 4.6 13.2a4.9 4.9 0 0 1 6.93-6.93L12 6.74l.47-.47a4.9 4.9 0 0 1 6.93 6.93L12 20.3Z",
  plus: "M11 5h2v6h6v2h-6v6h-2v-6H5v-2h6z",
  queue: "M4 6h12v2H4zm0 5h12v2H4zm0 5h8v2H4zm14-2v-4l4 3-4 3Z",
  volume: "M4 9.5h3.5L12 5v14l-4.5-4.5H4zM15 8.5a5 5 0 0 1 0 7M17.5 6a8.5 8.5 0 0 1 0 12",
  mute: "M4 9.5h3.5L12 5v14l-4.5-4.5H4zM16 9.5l5 5M21 9.5l-5 5",
  album: "M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18Zm0 6.5a2.5 2.5 0 1 1 0 5 2.5 2.5 0 0 1 0-5Z",
  artist: "M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8Zm-7 8a7 7 0 0 1 14 0Z",
  tracks:
    "M9 17.5V6l11-2v11.5M9 17.5a2.5 2.5 0 1 1-5 0 2.5 2.5 0 0 1 5 0Zm11-2a2.5 2.5 0 1 1-5 0 2.5 2.5 0 0 1 5 0Z",
  playlist: "M3 6h13M3 11h13M3 16h8M17 13v7.5M17 20.5a2 2 0 1 1-2-2h2",
  master: "M4 14v6M9 9v11M14 4v16M19 11v9M2 14h4M7 9h4M12 4h4M17 11h4",
  upload: "M12 16V4m0 0-4.5 4.5M12 4l4.5 4.5M4 16v3a1 1 0 0 0 1 1h14a1 1 0 0 0 1-1v-3",
  download: "M12 4v12m0 0-4.5-4.5M12 16l4.5-4.5M4 16v3a1 1 0 0 0 1 1h14a1 1 0 0 0 1-1v-3",
  close: "M6 6l12 12M18 6 6 18",
  trash: "M5 7h14M10 7V4.5h4V7M7 7l1 13h8l1-13",
  search: "M10.5 17a6.5 6.5 0 1 0 0-13 6.5 6.5 0 0 0 0 13Zm4.6-1.9L20 20",
  refresh: "M20 12a8 8 0 1 1-2.34-5.66M20 4v4.5h-4.5",
  report: "M6 3h9l4 4v14H6zM9 17v-3M12 17v-6M15 17v-4",
  now: "M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18Zm-2 5.5 6 3.5-6 3.5Z",
} as const;

export type IconName = keyof typeof PATHS;

const FILLED = new Set<IconName>([
  "play",
  "pause",
  "next",
  "previous",
  "plus",
  "queue",
  "album",
  "artist",
  "now",
]);

export function icon(name: IconName, className = "icon"): SVGSVGElement {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", `${className} icon-${name}`);
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", PATHS[name]);
  if (FILLED.has(name)) {
    path.setAttribute("fill", "currentColor");
    if (name === "album" || name === "now") path.setAttribute("fill-rule", "evenodd");
  } else {
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", "currentColor");
    path.setAttribute("stroke-width", "2");
    path.setAttribute("stroke-linecap", "round");
    path.setAttribute("stroke-linejoin", "round");
  }
  svg.append(path);
  return svg;
}
