package contactstore

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/custom-auth/custom_auth/contact"
)

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// alice is the demo's contact, identified by id.
func alice() *contact.Contact {
	return &contact.Contact{
		ID: "2", Name: "Nguyễn Văn B", Email: "b@example.com", PhoneNumber: "0912345678",
		CountryCode: "+84", Label: "VIP", IdentifyBy: "id",
		Metadata: map[string]any{"order_id": "ORD-5578XZ", "order_quantity": float64(3)},
	}
}

func countContacts(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM contacts`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func save(t *testing.T, s *Store, seen Seen) Result {
	t.Helper()
	res, err := s.Save(context.Background(), seen)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestSaveCreatedUpdatedUnchanged(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		renamed := alice()
		renamed.Name = "Nguyễn Văn C"
		renamed.Metadata = map[string]any{"order_id": "ORD-9000", "coupon": nil}
		steps := []struct {
			name         string
			seen         Seen
			want         Outcome
			wantName     string
			wantMetadata map[string]any
		}{
			{"first visit", Seen{"shop", alice(), t0}, Created, "Nguyễn Văn B",
				map[string]any{"order_id": "ORD-5578XZ", "order_quantity": float64(3)}},
			{"new name and order", Seen{"shop", renamed, t0.Add(time.Minute)}, Updated, "Nguyễn Văn C",
				map[string]any{"order_id": "ORD-9000", "order_quantity": float64(3)}},
			{"same answer again", Seen{"shop", renamed, t0.Add(2 * time.Minute)}, Unchanged, "Nguyễn Văn C",
				map[string]any{"order_id": "ORD-9000", "order_quantity": float64(3)}},
			{"older answer after a newer one", Seen{"shop", alice(), t0.Add(90 * time.Second)}, Unchanged, "Nguyễn Văn C",
				map[string]any{"order_id": "ORD-9000", "order_quantity": float64(3)}},
		}
		var id int64
		for _, step := range steps {
			res := save(t, s, step.seen)
			if res.Outcome != step.want || res.Contact.Name != step.wantName || !maps.Equal(res.Contact.Metadata, step.wantMetadata) {
				t.Errorf("%s: %s %q %v, want %s %q %v", step.name, res.Outcome, res.Contact.Name, res.Contact.Metadata, step.want, step.wantName, step.wantMetadata)
			}
			if id == 0 {
				id = res.Contact.ID
			}
			if res.Contact.ID != id || res.Contact.Key != "2" || res.Contact.IdentifyBy != "id" {
				t.Errorf("%s: contact %d %s=%q, want %d id=\"2\"", step.name, res.Contact.ID, res.Contact.IdentifyBy, res.Contact.Key, id)
			}
		}
		if n := countContacts(t, s); n != 1 {
			t.Errorf("%d contacts stored, want 1", n)
		}
	})
}

func TestSaveMetadataMerge(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		c := alice()
		save(t, s, Seen{"shop", c, t0})
		steps := []struct {
			name     string
			metadata map[string]any
			want     map[string]any
		}{
			{"no metadata keeps it", nil, map[string]any{"order_id": "ORD-5578XZ", "order_quantity": float64(3)}},
			{"a new key is added", map[string]any{"tier": "gold"}, map[string]any{"order_id": "ORD-5578XZ", "order_quantity": float64(3), "tier": "gold"}},
			{"null removes a key", map[string]any{"order_quantity": nil}, map[string]any{"order_id": "ORD-5578XZ", "tier": "gold"}},
		}
		for i, step := range steps {
			c.Metadata = step.metadata
			res := save(t, s, Seen{"shop", c, t0.Add(time.Duration(i+1) * time.Minute)})
			if !maps.Equal(res.Contact.Metadata, step.want) {
				t.Errorf("%s: metadata %v, want %v", step.name, res.Contact.Metadata, step.want)
			}
		}
	})
}

func TestSaveEmailCaseInsensitive(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		first := &contact.Contact{Email: "B@Example.com", Name: "B", IdentifyBy: "email"}
		again := &contact.Contact{Email: "b@EXAMPLE.COM", Name: "B", IdentifyBy: "email"}
		a := save(t, s, Seen{"shop", first, t0})
		b := save(t, s, Seen{"shop", again, t0.Add(time.Second)})
		if a.Outcome != Created || b.Contact.ID != a.Contact.ID || b.Contact.Key != "b@example.com" {
			t.Errorf("got %s #%d then %s #%d key %q, want one contact keyed b@example.com", a.Outcome, a.Contact.ID, b.Outcome, b.Contact.ID, b.Contact.Key)
		}
		if b.Outcome != Updated || b.Contact.Email != "b@EXAMPLE.COM" {
			t.Errorf("the email as last sent: %s %q, want updated to b@EXAMPLE.COM", b.Outcome, b.Contact.Email)
		}
		if n := countContacts(t, s); n != 1 {
			t.Errorf("%d contacts stored, want 1", n)
		}
	})
}

// Fifty first requests of one visitor, at once: one contact, created once.
func TestSaveConcurrentFirstVisits(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		const visits = 50
		warmPool(t, s, visits)
		outcomes := make(chan Outcome, visits)
		errs := make(chan error, visits)
		var start, done sync.WaitGroup
		start.Add(1)
		for i := range visits {
			done.Go(func() {
				start.Wait()
				res, err := s.Save(context.Background(), Seen{"shop", alice(), t0.Add(time.Duration(i) * time.Millisecond)})
				errs <- err
				outcomes <- res.Outcome
			})
		}
		start.Done()
		done.Wait()
		close(outcomes)
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		count := map[Outcome]int{}
		for o := range outcomes {
			count[o]++
		}
		if count[Created] != 1 || count[Created]+count[Unchanged] != visits {
			t.Errorf("outcomes %v, want 1 created and %d unchanged", count, visits-1)
		}
		if n := countContacts(t, s); n != 1 {
			t.Errorf("%d contacts stored, want 1", n)
		}
	})
}

// warmPool opens n connections and leaves them idle, so that n requests at once really
// overlap instead of waiting for new connections one after another.
func warmPool(t *testing.T, s *Store, n int) {
	t.Helper()
	s.db.SetMaxIdleConns(n)
	var opened, hold sync.WaitGroup
	hold.Add(1)
	errs := make(chan error, n)
	for range n {
		opened.Add(1)
		go func() {
			conn, err := s.db.Conn(context.Background())
			opened.Done()
			if err != nil {
				errs <- err
				return
			}
			hold.Wait()
			errs <- conn.Close()
		}()
	}
	opened.Wait()
	hold.Done()
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestSaveBotsApart(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		other := alice()
		other.Name = "Someone else"
		a := save(t, s, Seen{"shop", alice(), t0})
		b := save(t, s, Seen{"other-shop", other, t0.Add(time.Second)})
		if a.Outcome != Created || b.Outcome != Created || a.Contact.ID == b.Contact.ID {
			t.Errorf("got %s #%d and %s #%d, want two contacts created", a.Outcome, a.Contact.ID, b.Outcome, b.Contact.ID)
		}
		again := save(t, s, Seen{"shop", alice(), t0.Add(2 * time.Second)})
		if again.Outcome != Unchanged || again.Contact.Name != "Nguyễn Văn B" {
			t.Errorf("the shop's contact after the other bot's: %s %q, want unchanged %q", again.Outcome, again.Contact.Name, "Nguyễn Văn B")
		}
		if n := countContacts(t, s); n != 2 {
			t.Errorf("%d contacts stored, want 2", n)
		}
	})
}

// An anonymous visitor who types a verified contact's email gets a lead of their own:
// the contact, its details and its messages stay as they were, and nothing of them
// reaches the visitor.
func TestLeadLeavesContactAlone(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		byEmail := alice()
		byEmail.IdentifyBy = "email"
		verified := save(t, s, Seen{"shop", byEmail, t0}).Contact
		if _, err := s.AddMessage(ctx, ContactConversation(verified), "visitor", "Where is order ORD-5578XZ?"); err != nil {
			t.Fatal(err)
		}

		for _, typed := range []string{"b@example.com", "B@EXAMPLE.COM", " b@example.com "} {
			lead, err := s.SaveLead(ctx, "shop", "visitor-1", "Mallory", typed)
			if err != nil {
				t.Fatal(err)
			}
			if lead.Name != "Mallory" || lead.Email != "b@example.com" && lead.Email != "B@EXAMPLE.COM" {
				t.Errorf("lead %+v, want only what was typed", lead)
			}
		}
		if _, err := s.AddMessage(ctx, VisitorConversation("shop", "visitor-1"), "visitor", "hello"); err != nil {
			t.Fatal(err)
		}

		after := save(t, s, Seen{"shop", byEmail, t0.Add(time.Second)})
		if after.Outcome != Unchanged || after.Contact.ID != verified.ID || after.Contact.Name != verified.Name ||
			!after.Contact.UpdatedAt.Equal(verified.UpdatedAt) || !maps.Equal(after.Contact.Metadata, verified.Metadata) {
			t.Errorf("the verified contact after the lead: %s %+v, want it unchanged: %+v", after.Outcome, after.Contact, verified)
		}
		if n := countContacts(t, s); n != 1 {
			t.Errorf("%d contacts stored, want 1", n)
		}
		visitorMessages, err := s.Messages(ctx, VisitorConversation("shop", "visitor-1"), 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(visitorMessages) != 1 || visitorMessages[0].Text != "hello" {
			t.Errorf("the visitor's messages: %+v, want only their own", visitorMessages)
		}
		contactMessages, err := s.Messages(ctx, ContactConversation(verified), 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(contactMessages) != 1 || contactMessages[0].Text != "Where is order ORD-5578XZ?" {
			t.Errorf("the contact's messages: %+v, want only theirs", contactMessages)
		}
	})
}

func TestMessagesLatestInOrder(t *testing.T) {
	eachStore(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		c := save(t, s, Seen{"shop", alice(), t0}).Contact
		for i := range 5 {
			if _, err := s.AddMessage(ctx, ContactConversation(c), "visitor", fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Messages(ctx, ContactConversation(c), 3)
		if err != nil {
			t.Fatal(err)
		}
		var texts []string
		for _, m := range got {
			texts = append(texts, m.Text)
		}
		if fmt.Sprint(texts) != "[2 3 4]" {
			t.Errorf("messages %v, want the last 3 oldest first: [2 3 4]", texts)
		}
		if other, _ := s.Messages(ctx, ContactConversation(Record{ID: c.ID, Bot: "other-shop"}), 10); len(other) != 0 {
			t.Errorf("another bot's conversation with the same id has %d messages, want 0", len(other))
		}
	})
}

func TestMatchKey(t *testing.T) {
	tests := []struct {
		contact contact.Contact
		want    string
		wantErr bool
	}{
		{contact.Contact{IdentifyBy: "id", ID: "2"}, "2", false},
		{contact.Contact{IdentifyBy: "email", Email: " B@Example.COM "}, "b@example.com", false},
		{contact.Contact{IdentifyBy: "phone_number", PhoneNumber: "091 234-5678", CountryCode: "+84"}, "84:0912345678", false},
		{contact.Contact{IdentifyBy: "phone_number", PhoneNumber: "(091) 234.5678", CountryCode: "84"}, "84:0912345678", false},
		{contact.Contact{IdentifyBy: "phone_number", PhoneNumber: "+84 912 345 678"}, ":+84912345678", false},
		{contact.Contact{IdentifyBy: "phone_number", PhoneNumber: "+"}, "", true},
		{contact.Contact{IdentifyBy: "email"}, "", true},
		{contact.Contact{IdentifyBy: "name", Name: "B"}, "", true},
	}
	for _, tt := range tests {
		got, err := MatchKey(&tt.contact)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("MatchKey(%+v) = %q, %v; want %q, error %v", tt.contact, got, err, tt.want, tt.wantErr)
		}
	}
}
