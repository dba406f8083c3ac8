/** Builds the browser demo: `vite build web` → dist/web (static files; `igpt serve` serves them). */
import { defineConfig } from 'vite';

export default defineConfig({
  // Relative URLs, so the page works from any path (a static host's subfolder, igpt serve's root).
  base: './',
  build: {
    outDir: '../dist/web',
    emptyOutDir: true,
    target: 'es2022',
    reportCompressedSize: false,
  },
  worker: { format: 'es' },
});
