package customauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// AdminAPI serves custom_auth's endpoint on Caddy's admin API:
//
//	POST /custom-auth/test
//	{"bot": "1f0c2a", "token": "…", "origin": "https://shop.example.com", "fields": {"user_id": "2"}}
//
// runs Custom Authentication for one visitor against the running config, with the
// first custom_auth handler that knows the bot, and answers with the report of
// `caddy custom-auth test --json`. It is what a dashboard's "Test" button calls.
// Caddy mounts it on its admin endpoint; it has no configuration.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (*AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.custom_auth",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the admin API's routes of custom_auth.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/custom-auth/test", Handler: caddy.AdminHandlerFunc(a.handleTest)}}
}

// testRequest is the body of POST /custom-auth/test: a visitor, as a widget request
// would describe them.
type testRequest struct {
	Bot    string            `json:"bot"`
	Token  string            `json:"token"`
	Origin string            `json:"origin"`
	Fields map[string]string `json:"fields"`
}

// maxTestRequestSize bounds the body of a test: a bot id, a token, an origin and a
// few fields.
const maxTestRequestSize = 64 << 10

func (a *AdminAPI) handleTest(w http.ResponseWriter, r *http.Request) error {
	req, err := decodeTestRequest(w, r)
	if err != nil {
		return err
	}
	h := firstHandlerKnowing(r.Context(), runningHandlers(), req.Bot)
	if h == nil {
		return badAdminRequest(fmt.Errorf("no custom_auth handler of the running config knows bot %q", req.Bot))
	}
	given := make(fieldValues, 0, len(req.Fields))
	for name, value := range req.Fields {
		given = append(given, fieldValue{name: name, value: value})
	}
	fields, err := testFields(h, given)
	if err != nil {
		return badAdminRequest(fmt.Errorf("fields: %w", err))
	}

	report := runTestReport(r.Context(), h, visit{botID: req.Bot, origin: req.Origin, token: req.Token, fields: fields})
	w.Header().Set("Content-Type", "application/json")
	return report.writeJSON(w)
}

// decodeTestRequest reads the body of a test.
func decodeTestRequest(w http.ResponseWriter, r *http.Request) (testRequest, error) {
	var req testRequest
	if err := decodeAdminPost(w, r, maxTestRequestSize, &req); err != nil {
		return req, err
	}
	if req.Bot == "" {
		return req, badAdminRequest(errors.New(`request body: "bot" is required`))
	}
	return req, nil
}

// decodeAdminPost reads the body of a POST to an admin endpoint into req: one JSON
// object of at most limit bytes (413 above), with no unknown field, so that a misspelt
// "tokn" is refused instead of read as missing, and nothing after it. Any other
// method is 405. Its errors are the endpoint's answer.
func decodeAdminPost(w http.ResponseWriter, r *http.Request, limit int64, req any) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed: %s; use POST", r.Method)}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(req); err != nil {
		if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
			return caddy.APIError{HTTPStatus: http.StatusRequestEntityTooLarge, Err: fmt.Errorf("request body is over %d bytes", limit)}
		}
		if err == io.EOF {
			return badAdminRequest(errors.New(`request body is empty; want a JSON object such as {"bot": "…", "token": "…"}`))
		}
		return badAdminRequest(fmt.Errorf("request body: %w", err))
	}
	if err := dec.Decode(new(json.RawMessage)); err != io.EOF {
		return badAdminRequest(errors.New("request body: must be one JSON object"))
	}
	return nil
}

func badAdminRequest(err error) error {
	return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
}

// firstHandlerKnowing returns the first handler that knows the bot, nil when none does.
func firstHandlerKnowing(ctx context.Context, handlers []*Handler, botID string) *Handler {
	for _, h := range handlers {
		if h.knowsBot(ctx, botID) {
			return h
		}
	}
	return nil
}

// runningHandlers returns the custom_auth handlers of the running config, found in
// its HTTP servers as they run, so that a test sees their state: fetched whitelists
// and bot settings, circuit breakers. (A registry filled by Provision would also hold
// the handlers of a config being loaded or unloaded, and know no config order.) The
// order is the one `caddy custom-auth test` reads a config file in, its JSON keys
// sorted, so both pick the same handler: servers by name; in each, the error routes,
// the named routes by name, then the routes; handlers in route order, subroutes
// (`handle`, `route`, …) included.
func runningHandlers() []*Handler {
	app, err := caddy.ActiveContext().AppIfConfigured("http")
	if err != nil {
		return nil
	}
	httpApp, ok := app.(*caddyhttp.App)
	if !ok {
		return nil
	}
	return handlersOf(httpApp)
}

// handlersOf returns the custom_auth handlers of a provisioned HTTP app, in the order
// of runningHandlers.
func handlersOf(httpApp *caddyhttp.App) []*Handler {
	var found handlerList
	for _, name := range slices.Sorted(maps.Keys(httpApp.Servers)) {
		srv := httpApp.Servers[name]
		found.addErrorRoutes(srv.Errors)
		for _, routeName := range slices.Sorted(maps.Keys(srv.NamedRoutes)) {
			found.addRoute(srv.NamedRoutes[routeName])
		}
		found.addRoutes(srv.Routes)
	}
	return found
}

// handlerList collects the custom_auth handlers of provisioned routes.
type handlerList []*Handler

func (hl *handlerList) addRoutes(routes caddyhttp.RouteList) {
	for i := range routes {
		hl.addRoute(&routes[i])
	}
}

func (hl *handlerList) addErrorRoutes(errs *caddyhttp.HTTPErrorConfig) {
	if errs != nil {
		hl.addRoutes(errs.Routes)
	}
}

func (hl *handlerList) addRoute(route *caddyhttp.Route) {
	for _, mh := range route.Handlers {
		switch mh := mh.(type) {
		case *Handler:
			*hl = append(*hl, mh)
		case *caddyhttp.Subroute:
			hl.addErrorRoutes(mh.Errors)
			hl.addRoutes(mh.Routes)
		}
	}
}

// Interface guards
var (
	_ caddy.Module      = (*AdminAPI)(nil)
	_ caddy.AdminRouter = (*AdminAPI)(nil)
)
