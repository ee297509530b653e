// A stand-in for a chat widget, embedded the way a website embeds one:
//
//   <script src="/widget.js" data-bot="demo-bot" data-token="ACCESS-TOKEN"
//           data-user-id="2" data-email="b@example.com" data-phone-number="0912345678"></script>
//
// It sends one request through the custom_auth gateway and shows what the chat backend
// received: the verified contact, or the reason it will ask the visitor instead.
(() => {
  const tag = document.currentScript;
  const options = tag.dataset;
  // Served through Caddy's templates, which fill in the demo site's `vars gateway`.
  const gateway = options.gateway || '{{placeholder "http.vars.gateway"}}';

  const box = document.createElement("section");
  box.className = "chat-widget";
  box.setAttribute("aria-live", "polite");
  box.innerHTML =
    '<header><span class="dot"></span>Support chat<small></small></header>' +
    '<div class="chat-body"><p class="chat-result" data-status="pending">Connecting…</p></div>';
  box.querySelector("small").textContent = "bot " + (options.bot || "?");
  tag.after(box);
  const result = box.querySelector(".chat-result");
  const body = box.querySelector(".chat-body");

  const headers = {};
  const fields = [
    ["bot", "X-Bot-Id"],
    ["token", "X-Access-Token"],
    ["userId", "X-User-Id"],
    ["email", "X-User-Email"],
    ["phoneNumber", "X-User-Phone"],
  ];
  for (const [option, header] of fields) {
    if (options[option]) headers[header] = options[option];
  }

  // Contact headers may be percent-encoded (any non-ASCII, such as a Vietnamese name);
  // decoding is always safe.
  const decode = (value) => {
    try {
      return decodeURIComponent(value);
    } catch {
      return value;
    }
  };

  const show = (status, text, rows) => {
    result.dataset.status = status;
    result.textContent = text;
    if (!rows || rows.length === 0) return;
    const table = document.createElement("table");
    table.className = "chat-contact";
    for (const [name, value] of rows) {
      const tr = table.insertRow();
      tr.insertCell().textContent = name;
      tr.insertCell().textContent = value;
    }
    body.append(table);
  };

  fetch(gateway, { headers })
    .then((response) => {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    })
    .then((answer) => {
      const contact = {};
      for (const [name, value] of Object.entries(answer.contact_headers || {})) {
        contact[name.replace(/^X-Contact-/i, "").toLowerCase()] = decode(value);
      }
      if (answer.status !== "verified") {
        show(
          "fallback",
          "Anonymous: the backend would ask for contact details (reason: " +
            (answer.reason || "none") + ")",
          Object.keys(contact).length > 0
            ? Object.entries(contact)
            : [["contact", "none: no X-Contact-* header reached the backend"]],
        );
        return;
      }
      let metadata = contact.metadata || "";
      try {
        metadata = Object.entries(JSON.parse(metadata))
          .map(([key, value]) => key + " " + value)
          .join(", ");
      } catch {
        // not JSON: shown as it came
      }
      show(
        "verified",
        "Verified: " + [contact.name, contact.email, "metadata " + (metadata || "none")].join(", "),
        Object.entries(contact)
          .filter(([name]) => name !== "metadata")
          .map(([name, value]) =>
            name === "assertion" ? [name, value.slice(0, 24) + "…"] : [name, value],
          ),
      );
    })
    .catch((err) => show("error", "Could not reach the chat gateway: " + err.message));
})();
