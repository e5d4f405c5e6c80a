// Vite builds the player into the Python package, where `tonearm serve` finds it
// (src/tonearm/server/web.py). `npm run dev` proxies the API to a server on :8765.
import { defineConfig } from "vite";

export default defineConfig({
  build: {
    outDir: "../src/tonearm/server/static",
    emptyOutDir: true,
    target: "es2022",
    reportCompressedSize: false,
  },
  server: {
    proxy: {
      "/api": "http://127.0.0.1:8765",
      "/ws": { target: "ws://127.0.0.1:8765", ws: true },
    },
  },
});
