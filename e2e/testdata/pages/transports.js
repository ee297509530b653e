// What a chat widget does over each transport, for the e2e tests to call from a page on
// the widget's origin. Each function resolves with the chat backend's answers, and
// rejects with what went wrong, such as a connection the browser refused.

// The token in a cookie that the chat's host receives too: set by the customer's site on
// the parent domain of both. Another cookie of the site's rides along.
window.setTokenCookie = (token, domain) => {
  document.cookie = "ca_token=" + token + "; Domain=" + domain + "; Path=/; SameSite=Lax";
  document.cookie = "shop_session=s1; Domain=" + domain + "; Path=/; SameSite=Lax";
};

// A WebSocket: the backend's greeting, then its answer to one message.
window.chatOverWebSocket = (url, text) =>
  new Promise((resolve, reject) => {
    const answers = [];
    const socket = new WebSocket(url);
    socket.onmessage = (event) => {
      answers.push(JSON.parse(event.data));
      if (answers.length === 1) {
        socket.send(JSON.stringify({ text }));
      } else {
        socket.close(1000);
        resolve(answers);
      }
    };
    socket.onclose = (event) => reject(new Error("WebSocket closed early, code " + event.code));
  });

// An event stream with cookies (withCredentials): its first event.
window.chatOverEventSource = (url) =>
  new Promise((resolve, reject) => {
    const source = new EventSource(url, { withCredentials: true });
    source.onmessage = (event) => {
      source.close();
      resolve([JSON.parse(event.data)]);
    };
    source.onerror = () => {
      source.close();
      reject(new Error("EventSource failed"));
    };
  });

// A cross-origin request with the widget's headers: the browser asks the gateway first
// (a CORS preflight), and must be allowed to read the answer.
window.chatOverFetch = async (url, headers, text) => {
  const response = await fetch(url, {
    method: "POST",
    headers: { ...headers, "Content-Type": "application/json" },
    body: JSON.stringify({ text }),
  });
  if (!response.ok) throw new Error("HTTP " + response.status);
  return [await response.json()];
};
