// Cross-origin isolation where the server does not send its headers (a static host): the
// service worker (sw.js) adds them, and the page reloads once, before anything has started,
// to be served through it. Where isolation is impossible (no service workers, a private window
// refusing them, an insecure origin), nothing happens and the CPU path uses one thread.
if (!self.crossOriginIsolated && navigator.serviceWorker && self.isSecureContext) {
  const TRIED = "webvae-isolation-reload";
  navigator.serviceWorker.register(new URL("sw.js", document.baseURI)).then((registration) => {
    // Once per tab, so that a browser whose worker cannot isolate never loops: when it takes
    // control (the first visit), or at once if it is active but this load bypassed it (a hard
    // reload).
    const reload = () => {
      if (sessionStorage.getItem(TRIED)) return;
      sessionStorage.setItem(TRIED, "1");
      location.reload();
    };
    if (registration.active) reload();
    else navigator.serviceWorker.addEventListener("controllerchange", reload, { once: true });
  }).catch((err) => console.warn(`No cross-origin isolation (the CPU path uses one thread): ${err.message}`));
}
