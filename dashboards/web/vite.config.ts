/// <reference types="vitest/config" />
import tailwindcss from "@tailwindcss/vite";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// `npm run dev` proxies the API to a running web_api (ARETE_API_URL, default below), so
// the dashboard and the API share one origin, as they do when web_api serves dist/.
const api = process.env.ARETE_API_URL ?? "http://127.0.0.1:8080";
const apiPaths = [
  "/auth", "/agents", "/commands", "/jobs", "/alerts", "/silences", "/audit", "/users",
  "/healthz", "/readyz",
];

export default defineConfig({
  plugins: [react(), tailwindcss()],
  base: "/",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 1024 },
  server: {
    proxy: {
      ...Object.fromEntries(apiPaths.map((p) => [p, { target: api, ws: true }])),
      "/ws": { target: api, ws: true },
    },
  },
  test: { environment: "node", include: ["src/**/*.test.ts"] },
});
