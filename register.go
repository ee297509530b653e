package customauth

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// init adds custom_auth to Caddy: the handler and its Caddyfile directive, the admin
// endpoints, and the `caddy custom-auth` command. It also lets go-jose read the RSA
// keys this module accepts, before any key is parsed.
func init() {
	caddy.RegisterModule(new(Handler))
	caddy.RegisterModule(new(AdminAPI))
	caddy.RegisterModule(new(PurgeAPI))
	httpcaddyfile.RegisterHandlerDirective("custom_auth", parseCaddyfile)
	// After forward_auth and before every routing and responding directive, so that a
	// top-level custom_auth runs before `handle`, `route`, `respond`, `reverse_proxy`…
	httpcaddyfile.RegisterDirectiveOrder("custom_auth", httpcaddyfile.After, "forward_auth")
	caddycmd.RegisterCommand(customAuthCommand())
	allowRSAKeysOfMaxBits()
}
