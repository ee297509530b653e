package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/custom-auth/custom_auth/contact"
	"github.com/custom-auth/custom_auth/contactstore"
)

// chatBackend is the demo's chat backend behind the gateway. It keeps the contacts the
// gateway verified, the leads anonymous visitors type, and every conversation, in a
// contactstore. A GET of /chat opens the chat, a POST sends a message, and a POST of
// /chat/lead is the "Collect Information" form.
type chatBackend struct {
	store  *contactstore.Store
	reader *contactstore.Reader
	log    *slog.Logger
}

// historyLength is how many earlier messages a returning visitor sees.
const historyLength = 50

// chatAnswer is what the widget shows: the agent's reply, the earlier messages when the
// chat opens, and the Contact Details panel.
type chatAnswer struct {
	Reply   string           `json:"reply"`
	History []historyMessage `json:"history,omitempty"`
	// Status is "verified" or "fallback"; Reason is the gateway's reason for a fallback.
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Outcome is what the visit did with the contact: created, updated or unchanged.
	// Only the opening of the chat reports it.
	Outcome string        `json:"outcome,omitempty"`
	Contact *shownContact `json:"contact,omitempty"`
	Lead    *shownLead    `json:"lead,omitempty"`
}

type historyMessage struct {
	From string `json:"from"`
	Text string `json:"text"`
}

// shownContact is a verified contact as the support agent sees it.
type shownContact struct {
	IdentifyBy  string         `json:"identify_by"`
	Key         string         `json:"key"`
	ID          string         `json:"id,omitempty"`
	Name        string         `json:"name,omitempty"`
	Email       string         `json:"email,omitempty"`
	PhoneNumber string         `json:"phone_number,omitempty"`
	CountryCode string         `json:"country_code,omitempty"`
	Label       string         `json:"label,omitempty"`
	Metadata    map[string]any `json:"metadata,omitempty"`
}

// shownLead is what an anonymous visitor typed, shown as unverified.
type shownLead struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// visit is one request: its bot, the verified contact or the anonymous visitor, and
// the conversation it belongs to.
type visit struct {
	bot          string
	visitor      string
	seen         contactstore.Seen
	verified     bool
	conversation contactstore.Conversation
}

func (b *chatBackend) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /chat", b.open)
	mux.HandleFunc("POST /chat", b.message)
	mux.HandleFunc("POST /chat/lead", b.lead)
	return mux
}

// identify reads who the request is from: the gateway's verified contact, or the
// anonymous visitor the widget names in X-Visitor-Id (without it, an anonymous request
// has no conversation).
func (b *chatBackend) identify(r *http.Request) visit {
	v := visit{bot: r.Header.Get("X-Bot-Id"), visitor: r.Header.Get("X-Visitor-Id")}
	seen, err := b.reader.Read(r)
	switch {
	case err == nil:
		v.seen, v.verified = seen, true
		return v
	case !errors.Is(err, contact.ErrNoContact):
		b.log.Info("assertion refused: the visitor is anonymous", "bot", v.bot, "error", err)
	}
	if v.bot != "" && v.visitor != "" && len(v.visitor) <= contactstore.MaxVisitorLength {
		v.conversation = contactstore.VisitorConversation(v.bot, v.visitor)
	}
	return v
}

// open answers the opening of the chat: it saves a verified contact and reports what
// that did, or looks up an anonymous visitor's own lead; and returns the earlier
// messages of that conversation only.
func (b *chatBackend) open(w http.ResponseWriter, r *http.Request) {
	v, answer, ok := b.start(w, r)
	if !ok {
		return
	}
	var history []contactstore.Message
	if v.conversation != (contactstore.Conversation{}) {
		var err error
		if history, err = b.store.Messages(r.Context(), v.conversation, historyLength); err != nil {
			b.fail(w, err)
			return
		}
	}
	for _, m := range history {
		answer.History = append(answer.History, historyMessage{m.From, m.Text})
	}
	answer.Reply = greeting(answer, len(history) > 0)
	writeJSON(w, answer)
}

// message stores a visitor's message and the agent's reply.
func (b *chatBackend) message(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Text string `json:"text"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body); err != nil || strings.TrimSpace(body.Text) == "" {
		http.Error(w, "a message is JSON with a text", http.StatusBadRequest)
		return
	}
	v, answer, ok := b.start(w, r)
	if !ok || !hasConversation(w, v) {
		return
	}
	answer.Outcome = "" // the visit's outcome is the opening's
	answer.Reply = reply(answer)
	for _, m := range []historyMessage{{"visitor", body.Text}, {"agent", answer.Reply}} {
		if _, err := b.store.AddMessage(r.Context(), v.conversation, m.From, m.Text); err != nil {
			b.fail(w, err)
			return
		}
	}
	writeJSON(w, answer)
}

// lead stores what an anonymous visitor typed in the Collect Information form. A
// verified visitor has nothing to type.
func (b *chatBackend) lead(w http.ResponseWriter, r *http.Request) {
	var body shownLead
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body); err != nil {
		http.Error(w, "a lead is JSON with a name and an email", http.StatusBadRequest)
		return
	}
	v, answer, ok := b.start(w, r)
	if !ok {
		return
	}
	if v.verified {
		http.Error(w, "a verified visitor needs no contact form", http.StatusConflict)
		return
	}
	if !hasConversation(w, v) {
		return
	}
	lead, err := b.store.SaveLead(r.Context(), v.bot, v.visitor, body.Name, body.Email)
	if errors.Is(err, contactstore.ErrInvalidLead) {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err != nil {
		b.fail(w, err)
		return
	}
	answer.Lead = &shownLead{lead.Name, lead.Email}
	answer.Reply = reply(answer)
	writeJSON(w, answer)
}

// start identifies the request and fills in the Contact Details panel: for a verified
// visitor it saves the contact, for an anonymous one it reads their own lead. It has
// answered the request when ok is false.
func (b *chatBackend) start(w http.ResponseWriter, r *http.Request) (visit, chatAnswer, bool) {
	answer := chatAnswer{Status: "fallback", Reason: r.Header.Get("X-Custom-Auth-Reason")}
	v := b.identify(r)
	if v.verified {
		res, err := b.store.Save(r.Context(), v.seen)
		if err != nil {
			b.fail(w, err)
			return v, answer, false
		}
		v.conversation = contactstore.ContactConversation(res.Contact)
		answer.Status, answer.Reason, answer.Outcome = "verified", "", string(res.Outcome)
		answer.Contact = show(res.Contact)
		return v, answer, true
	}
	if v.conversation == (contactstore.Conversation{}) {
		return v, answer, true
	}
	lead, found, err := b.store.FindLead(r.Context(), v.bot, v.visitor)
	if err != nil {
		b.fail(w, err)
		return v, answer, false
	}
	if found {
		answer.Lead = &shownLead{lead.Name, lead.Email}
	}
	return v, answer, true
}

// hasConversation answers 400 for an anonymous request without a visitor id.
func hasConversation(w http.ResponseWriter, v visit) bool {
	if v.conversation == (contactstore.Conversation{}) {
		http.Error(w, "an anonymous visitor needs X-Bot-Id and X-Visitor-Id", http.StatusBadRequest)
		return false
	}
	return true
}

func show(c contactstore.Record) *shownContact {
	return &shownContact{
		IdentifyBy: c.IdentifyBy, Key: c.Key, ID: c.ExternalID, Name: c.Name, Email: c.Email,
		PhoneNumber: c.PhoneNumber, CountryCode: c.CountryCode, Label: c.Label, Metadata: c.Metadata,
	}
}

// greeting is the agent's first words when the chat opens.
func greeting(a chatAnswer, returning bool) string {
	switch {
	case a.Contact != nil && returning:
		return fmt.Sprintf("Welcome back, %s! Your earlier messages are above. How can we help?", a.Contact.Name)
	case a.Contact != nil:
		return fmt.Sprintf("Hello %s! We already know who you are, so there is no need to introduce yourself. How can we help?", a.Contact.Name)
	case a.Lead != nil:
		return fmt.Sprintf("Hello again, %s. How can we help?", a.Lead.Name)
	}
	return "Hello! Before we start, may we have your name and email address?"
}

// reply is the agent's answer to a message or to the contact form.
func reply(a chatAnswer) string {
	switch {
	case a.Contact != nil:
		return fmt.Sprintf("Thank you, %s. An agent can see your contact details and will answer here shortly.", a.Contact.Name)
	case a.Lead != nil:
		return fmt.Sprintf("Thank you, %s. An agent will answer here shortly.", a.Lead.Name)
	}
	return "Thank you. So that an agent can answer, please leave your name and email address first."
}

func (b *chatBackend) fail(w http.ResponseWriter, err error) {
	b.log.Error("chat backend", "error", err)
	http.Error(w, "the chat backend failed", http.StatusInternalServerError)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}
