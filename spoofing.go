package customauth

import (
	"net/http"

	"github.com/custom-auth/custom_auth/contact"
)

// stripSpoofing removes what a client sent that could be mistaken for a contact header.
func stripSpoofing(r *http.Request, prefix string) {
	contact.StripHeaders(r.Header, prefix)
}
