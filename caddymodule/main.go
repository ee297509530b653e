// Command caddymodule is Caddy with its standard modules and custom_auth.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/custom-auth/custom_auth"
)

func main() {
	caddycmd.Main()
}
