// A stand-in for a chat widget, embedded the way a website embeds one:
//
//   <script src="/widget.js" data-bot="demo-bot" data-token="ACCESS-TOKEN"
//           data-user-id="2" data-email="b@example.com" data-phone-number="0912345678"></script>
//
// It is a small chat: opening it asks the chat backend, through the custom_auth gateway,
// for a greeting, and each message is one more request. Every request carries the
// widget's headers, so the page's origin differs from the gateway's and the browser asks
// first (CORS), which the gateway answers. Next to the chat, a "Contact details" panel
// shows what the backend received, as a support agent would see it: the verified
// contact, or an anonymous visitor the backend would ask for contact details.
(() => {
  const tag = document.currentScript;
  const options = tag.dataset;
  // Served through Caddy's templates, which fill in the demo site's `vars gateway`.
  const gateway = options.gateway || '{{placeholder "http.vars.gateway"}}';

  const chat = document.createElement("section");
  chat.className = "chat-widget";
  chat.innerHTML =
    '<header><span class="dot"></span>Support chat<small></small></header>' +
    '<ol class="chat-messages" aria-live="polite"></ol>' +
    '<form class="chat-input">' +
    '<input name="text" autocomplete="off" placeholder="Type a message…" aria-label="Message" disabled>' +
    '<button type="submit" disabled>Send</button>' +
    "</form>";
  chat.querySelector("small").textContent = "bot " + (options.bot || "?");

  const panel = document.createElement("section");
  panel.className = "contact-panel";
  panel.dataset.status = "pending";
  panel.innerHTML =
    "<h2>Contact details <small>what the support agent sees</small></h2>" +
    '<p class="contact-note">Connecting…</p>' +
    '<table class="contact-fields"></table>';
  tag.after(chat, panel);

  const messages = chat.querySelector(".chat-messages");
  const form = chat.querySelector(".chat-input");
  const input = form.elements.text;
  const send = form.querySelector("button");
  const note = panel.querySelector(".contact-note");
  const fields = panel.querySelector(".contact-fields");

  const headers = {};
  for (const [option, header] of [
    ["bot", "X-Bot-Id"],
    ["token", "X-Access-Token"],
    ["userId", "X-User-Id"],
    ["email", "X-User-Email"],
    ["phoneNumber", "X-User-Phone"],
  ]) {
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

  const addMessage = (from, text) => {
    const item = document.createElement("li");
    item.className = "chat-message";
    item.dataset.from = from;
    item.textContent = text;
    messages.append(item);
    messages.scrollTop = messages.scrollHeight;
  };

  // The rows of the panel, in the order an agent reads them.
  const rows = [
    ["id", "Id"],
    ["name", "Name"],
    ["email", "Email"],
    ["phone", "Phone"],
    ["label", "Label"],
    ["metadata", "Metadata"],
    ["identify-by", "Identified by"],
    ["assertion", "Assertion"],
  ];

  const showContact = (answer) => {
    const contact = {};
    for (const [name, value] of Object.entries(answer.contact_headers || {})) {
      contact[name.replace(/^X-Contact-/i, "").toLowerCase()] = decode(value);
    }
    const shown = {
      id: contact.id,
      name: contact.name,
      email: contact.email,
      phone: [contact["country-code"], contact["phone-number"]].filter(Boolean).join(" "),
      label: contact.label,
      metadata: contact.metadata,
      "identify-by": contact["identify-by"],
      assertion: contact.assertion && "signed, " + contact.assertion.slice(0, 16) + "…",
    };
    if (contact.metadata) {
      try {
        shown.metadata = Object.entries(JSON.parse(contact.metadata))
          .map(([key, value]) => key + ": " + value)
          .join(", ");
      } catch {
        // not JSON: shown as it came
      }
    }
    panel.dataset.status = answer.status === "verified" ? "verified" : "fallback";
    note.textContent =
      answer.status === "verified"
        ? "Verified by the shop's identity API."
        : "Anonymous visitor: the backend would ask for your contact details (reason: " +
          (answer.reason || "none") + ").";
    fields.replaceChildren();
    for (const [field, label] of rows) {
      if (!shown[field]) continue;
      const row = fields.insertRow();
      row.dataset.field = field;
      row.insertCell().textContent = label;
      row.insertCell().textContent = shown[field];
    }
  };

  const showError = (err) => {
    panel.dataset.status = "error";
    note.textContent = "Could not reach the chat gateway: " + err.message;
  };

  // One request to the chat backend through the gateway: a GET opens the chat, a POST
  // sends a message. The backend answers with its reply and what it received.
  const ask = async (message) => {
    const init = { headers: { ...headers } };
    if (message !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify({ text: message });
    }
    const response = await fetch(gateway, init);
    if (!response.ok) throw new Error("HTTP " + response.status);
    const answer = await response.json();
    showContact(answer);
    addMessage("agent", answer.reply);
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    addMessage("visitor", text);
    try {
      await ask(text);
    } catch (err) {
      showError(err);
    }
  });

  ask()
    .then(() => {
      input.disabled = send.disabled = false;
    })
    .catch(showError);
})();
