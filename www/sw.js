// The page's service worker, for static hosts that cannot send headers (GitHub Pages): it adds
// the two headers of cross-origin isolation to every response of this site, so that the page
// may share memory with threads (SharedArrayBuffer) and the CPU path uses every core. isolate.js
// registers it, only where the server did not isolate the page itself. It changes nothing
// else: every request goes to the network as it would without it.

const ISOLATION = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
};

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const { request } = event;
  // Other sites' responses are theirs to mark; a cache-only request cannot be refetched.
  if (new URL(request.url).origin !== self.location.origin || request.cache === "only-if-cached") return;
  event.respondWith(fetch(request).then((response) => {
    if (response.type !== "basic") return response;
    const headers = new Headers(response.headers);
    for (const [name, value] of Object.entries(ISOLATION)) headers.set(name, value);
    return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
  }));
});
