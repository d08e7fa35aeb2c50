// Starts the console: loads main.js and everything it imports as one ES module graph.
//
// When any module of that graph fails to arrive, the browser runs none of it and the page stays
// blank. That happens to real users: Chromium aborts requests waiting for a connection when the
// machine's network changes (a VPN comes up, Wi-Fi roams, a virtual adapter appears), with
// net::ERR_NETWORK_CHANGED. So this classic script adds the module itself, and when the graph
// fails it says so and reloads the page after a short pause, a bounded number of times; after
// the last attempt it asks the user to reload. A console that started clears the count.
(() => {
  const KEY = "vmesh.bootAttempts";
  const DELAYS_MS = [300, 1000, 3000, 5000];
  const app = document.getElementById("app");

  function attempts() {
    try {
      return Number(sessionStorage.getItem(KEY)) || 0;
    } catch {
      return 0;
    }
  }
  function setAttempts(n) {
    try {
      if (n) sessionStorage.setItem(KEY, String(n));
      else sessionStorage.removeItem(KEY);
    } catch {
      // Storage refused (private mode, policy): the retries are then unbounded by count but
      // still paced, which is better than a blank page.
    }
  }
  function say(zh, en, state) {
    const p = document.createElement("p");
    p.className = "boot-message";
    p.setAttribute("role", "alert");
    p.dataset.testid = "boot-message";
    p.dataset.state = state;
    p.textContent = `${zh} ${en}`;
    app.replaceChildren(p);
  }

  const script = document.createElement("script");
  script.type = "module";
  script.src = "/js/main.js";
  script.addEventListener("load", () => setAttempts(0));
  script.addEventListener("error", () => {
    const n = attempts();
    if (n >= DELAYS_MS.length) {
      setAttempts(0);
      say(
        "控制台未能完整加载，请检查网络后刷新页面。",
        "The console did not load completely; check the network and reload the page.",
        "failed",
      );
      return;
    }
    setAttempts(n + 1);
    say("控制台加载中断，正在重试……", "The console's loading was interrupted; retrying…", "retrying");
    setTimeout(() => location.reload(), DELAYS_MS[n]);
  });
  document.head.append(script);
})();
