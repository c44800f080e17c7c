// Builds the web console (web/src) into web/dist, which flickd serves at /console/.
// Hashed file names under assets/ (cached for ever), no inline scripts or styles
// (the console's Content-Security-Policy allows only 'self').
import { defineConfig } from 'vite';

export default defineConfig({
  root: import.meta.dirname,
  base: '/console/',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    target: 'es2022',
    sourcemap: false,
  },
  logLevel: 'warn',
});
