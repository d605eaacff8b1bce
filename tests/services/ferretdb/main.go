// Command wire-ferretdb runs FerretDB (the MongoDB wire protocol over SQLite) for Wire's
// tests. It embeds the `ferretdb` package rather than building FerretDB's own command,
// which panics at start when built from the module proxy (it wants a version file the
// module zip lacks). The embedded form keeps telemetry off.
//
//	wire-ferretdb -listen 127.0.0.1:27117 -dir /tmp/wire-services/ferretdb/data
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27117", "TCP address to serve the MongoDB protocol on")
	dir := flag.String("dir", "", "directory of the SQLite databases (created if missing)")
	flag.Parse()
	if *dir == "" {
		log.Fatal("-dir is required")
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		log.Fatal(err)
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := f.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
