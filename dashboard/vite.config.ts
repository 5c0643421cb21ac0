// Production build of the dashboard: `npm run build:dashboard` → dashboard/dist.
// Kept apart from the root vite.config.ts, which is the vitest config for the whole repo.
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'
import solid from 'vite-plugin-solid'

const root = fileURLToPath(new URL('.', import.meta.url))

export default defineConfig({
  root,
  // Relative asset URLs so a full node (`cell up --dashboard`) can serve dist/ under any path.
  base: './',
  plugins: [solid()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    reportCompressedSize: true,
    // The light peer (libp2p, ~1 MB, ~300 kB gzipped) is its own chunk, loaded only to join a fleet.
    chunkSizeWarningLimit: 1200
  }
})
