// `pnpm dev` forwards /api/gateway/* to GATEWAY_URL, as server.mjs does in production.
import { defineConfig } from 'vite'

const gateway = process.env.GATEWAY_URL

export default defineConfig({
  server: gateway
    ? {
        proxy: {
          '/api/gateway': {
            target: gateway,
            changeOrigin: true,
            rewrite: (path) => path.replace(/^\/api\/gateway/, '') || '/',
          },
        },
      }
    : {},
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // Every browser the page targets supports modulepreload.
    modulePreload: { polyfill: false },
  },
})
