package contactstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/custom-auth/custom_auth/contact"
	"github.com/custom-auth/custom_auth/contactstore"
)

// A chat backend behind the gateway: a verified visitor is saved as a contact and
// greeted by name; an anonymous one is asked for details, kept as an unverified lead.
func Example() {
	dir, _ := os.MkdirTemp("", "contactstore-example-")
	defer os.RemoveAll(dir)
	signKey := []byte("demo-signing-key-0123456789abcdef") // the gateway's sign_key

	// backend:start
	ctx := context.Background()
	store, err := contactstore.OpenSQLite(ctx, filepath.Join(dir, "contacts.db"))
	// or contactstore.OpenPostgres(ctx, "postgres://chat@127.0.0.1:5432/chat")
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	verifier, err := contact.NewHMACVerifier(signKey)
	if err != nil {
		log.Fatal(err)
	}
	reader := &contactstore.Reader{Verifier: verifier} // the bot: X-Bot-Id

	chat := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, err := reader.Read(r)
		if err != nil { // anonymous (contact.ErrNoContact) or a refused assertion
			if r.Method == http.MethodPost { // the Collect Information form
				lead, err := store.SaveLead(r.Context(), r.Header.Get("X-Bot-Id"),
					r.Header.Get("X-Visitor-Id"), r.FormValue("name"), r.FormValue("email"))
				if errors.Is(err, contactstore.ErrInvalidLead) {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				if err != nil {
					http.Error(w, "the chat backend failed", http.StatusInternalServerError)
					return
				}
				fmt.Fprintf(w, "Thank you, %s (unverified).", lead.Name)
				return
			}
			fmt.Fprint(w, "May we have your name and email address?")
			return
		}
		res, err := store.Save(r.Context(), seen)
		if err != nil {
			http.Error(w, "the chat backend failed", http.StatusInternalServerError)
			return
		}
		history, _ := store.Messages(r.Context(), contactstore.ContactConversation(res.Contact), 50)
		fmt.Fprintf(w, "%s: %s (%s = %s), %d earlier messages", res.Outcome,
			res.Contact.Name, res.Contact.IdentifyBy, res.Contact.Key, len(history))
	})
	// backend:end

	// The gateway's assertion for a verified visitor of bot "shop".
	signer, _ := contact.NewHMACSigner(signKey)
	for _, name := range []string{"Nguyễn Văn B", "Nguyễn Văn C", "Nguyễn Văn C"} {
		data := fmt.Sprintf(`{"id":"2","name":%q}`, name)
		assertion, _ := signer.Sign("shop", "2", "id", []byte(data), time.Now(), time.Minute)
		r := httptest.NewRequest(http.MethodGet, "/chat", nil)
		r.Header.Set("X-Bot-Id", "shop")
		r.Header.Set("X-Contact-Assertion", assertion)
		w := httptest.NewRecorder()
		chat.ServeHTTP(w, r)
		fmt.Println(w.Body.String())
	}
	// Output:
	// created: Nguyễn Văn B (id = 2), 0 earlier messages
	// updated: Nguyễn Văn C (id = 2), 0 earlier messages
	// unchanged: Nguyễn Văn C (id = 2), 0 earlier messages
}
