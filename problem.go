package customauth

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// problem is the RFC 9457 body of a 401 from `on_fail reject`: why the visitor was not
// verified, so that a widget developer can see it. It holds the reason only, never
// the token or a contact value.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Reason reason `json:"reason"`
}

// writeProblem answers 401 with the problem body for a reason.
func writeProblem(w http.ResponseWriter, r reason) error {
	body, err := json.Marshal(problem{Type: "about:blank", Title: "Unauthorized", Status: http.StatusUnauthorized, Reason: r})
	if err != nil {
		return err
	}
	header := w.Header()
	header["Content-Type"] = []string{"application/problem+json"}
	header["Cache-Control"] = []string{"no-store"}
	header["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(http.StatusUnauthorized)
	w.Write(body) // a visitor who left needs no error log
	return nil
}
