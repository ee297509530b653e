// A stand-in for a chat widget, embedded the way a website embeds one:
//
//   <script src="/widget.js" data-bot="demo-bot" data-token="ACCESS-TOKEN"
//           data-user-id="2" data-email="b@example.com" data-phone-number="0912345678"></script>
//
// It is a small chat: opening it asks the chat backend, through the custom_auth gateway,
// for the earlier messages and a greeting, and each message is one more request. Every
// request carries the widget's headers, so the page's origin differs from the gateway's
// and the browser asks first (CORS), which the gateway answers. Next to the chat, a
// "Contact details" panel shows what the backend did, as a support agent would see it:
// a new or returning verified contact, or an anonymous visitor, whom the backend asks
// for a name and an email ("Collect Information") and keeps as an unverified lead.
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

  // An anonymous visitor is known to the backend by a random id that this browser keeps
  // for the page's origin; a verified one by the gateway's contact.
  let visitor = localStorage.getItem("chat-visitor");
  if (!visitor) {
    visitor = crypto.randomUUID();
    localStorage.setItem("chat-visitor", visitor);
  }
  const headers = { "X-Visitor-Id": visitor };
  for (const [option, header] of [
    ["bot", "X-Bot-Id"],
    ["token", "X-Access-Token"],
    ["userId", "X-User-Id"],
    ["email", "X-User-Email"],
    ["phoneNumber", "X-User-Phone"],
  ]) {
    if (options[option]) headers[header] = options[option];
  }

  const addMessage = (from, text) => {
    const item = document.createElement("li");
    item.className = "chat-message";
    item.dataset.from = from;
    item.textContent = text;
    messages.append(item);
    messages.scrollTop = messages.scrollHeight;
  };

  // What the panel says of the visit.
  const notes = {
    created: "New contact: created from the identity API's answer.",
    updated: "Welcome back: details updated from the identity API's answer.",
    unchanged: "Welcome back: details unchanged.",
  };

  const addRow = (field, label, value) => {
    if (!value) return;
    const row = fields.insertRow();
    row.dataset.field = field;
    row.insertCell().textContent = label;
    row.insertCell().textContent = value;
  };

  const showContact = (c) => {
    addRow("identified-by", "Identified by", c.identify_by + " = " + c.key);
    addRow("name", "Name", c.name);
    addRow("email", "Email", c.email);
    addRow("phone", "Phone", [c.country_code, c.phone_number].filter(Boolean).join(" "));
    addRow("label", "Label", c.label);
    const metadata = Object.entries(c.metadata || {}).map(([key, value]) => key + ": " + value);
    addRow("metadata", "Metadata", metadata.sort().join(", "));
  };

  const showLead = (lead) => {
    addRow("name", "Name", lead.name);
    addRow("email", "Email", lead.email);
  };

  // The Contact Details panel, from the backend's answer. The note of a visit (new,
  // updated, unchanged) comes with the opening of the chat and stays.
  const showPanel = (answer) => {
    panel.dataset.status = answer.status === "verified" ? "verified" : "fallback";
    if (answer.outcome) {
      panel.dataset.outcome = answer.outcome;
      note.textContent = notes[answer.outcome] || answer.outcome;
    } else if (answer.status !== "verified") {
      delete panel.dataset.outcome;
      const reason = " (reason: " + (answer.reason || "none") + ")";
      note.textContent = answer.lead
        ? "Unverified lead: what the visitor typed, never matched with a verified contact" + reason + "."
        : "Anonymous visitor: the backend asks for a name and an email" + reason + ".";
    }
    fields.replaceChildren();
    if (answer.contact) showContact(answer.contact);
    if (answer.lead) showLead(answer.lead);
    collect.hidden = answer.status === "verified" || Boolean(answer.lead);
  };

  const showError = (err) => {
    panel.dataset.status = "error";
    note.textContent = "Could not reach the chat gateway: " + err.message;
  };

  // One request to the chat backend through the gateway: a GET opens the chat, a POST
  // sends a message or the contact form. The backend answers with its reply and the
  // Contact Details.
  const ask = async (path, body) => {
    const init = { headers: { ...headers } };
    if (body !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(gateway + path, init);
    if (!response.ok) throw new Error("HTTP " + response.status);
    const answer = await response.json();
    for (const m of answer.history || []) addMessage(m.from, m.text);
    showPanel(answer);
    addMessage("agent", answer.reply);
  };

  // The default "Collect Information" flow, for a visitor the gateway did not verify.
  const collect = document.createElement("form");
  collect.className = "collect-info";
  collect.hidden = true;
  collect.innerHTML =
    "<p>Who are you? An agent will see this as unverified.</p>" +
    '<input name="name" autocomplete="name" placeholder="Your name" aria-label="Name" required>' +
    '<input name="email" type="email" autocomplete="email" placeholder="Your email" aria-label="Email" required>' +
    '<button type="submit">Send my details</button>';
  chat.querySelector(".chat-input").before(collect);
  collect.addEventListener("submit", async (event) => {
    event.preventDefault();
    const details = { name: collect.elements.name.value.trim(), email: collect.elements.email.value.trim() };
    try {
      await ask("/lead", details);
    } catch (err) {
      showError(err);
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    addMessage("visitor", text);
    try {
      await ask("", { text });
    } catch (err) {
      showError(err);
    }
  });

  ask("")
    .then(() => {
      input.disabled = send.disabled = false;
    })
    .catch(showError);
})();
