package transport

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/archive"
)

// Inventory says what base holds, for a delta bundle (Options.Since):
// base is a layout directory (oci:DIR, or DIR), an archive of either
// format (oci-archive:FILE, docker-archive:FILE, or FILE), or an
// inventory file written by `strata inventory` (JSON, told apart from an
// archive by its first byte).
func Inventory(ctx context.Context, base string) (*layout.Inventory, error) {
	p := base
	for _, prefix := range []string{"oci:", string(archive.OCI) + ":", string(archive.Docker) + ":"} {
		p = strings.TrimPrefix(p, prefix)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("delta base %s: %w", base, err)
	}
	if fi.IsDir() {
		l, err := layout.Open(p)
		if err != nil {
			return nil, fmt.Errorf("delta base %s: %w", base, err)
		}
		defer l.Close()
		return l.Inventory(ctx)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("delta base %s: %w", base, err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	head, _ := br.Peek(64)
	if b := bytes.TrimLeft(head, " \t\r\n"); len(b) > 0 && b[0] == '{' {
		data, err := io.ReadAll(io.LimitReader(br, layout.MaxInventorySize+1))
		if err != nil {
			return nil, fmt.Errorf("delta base %s: %w", base, err)
		}
		inv, err := layout.ParseInventory(data)
		if err != nil {
			return nil, fmt.Errorf("delta base %s: %w", base, err)
		}
		return inv, nil
	}
	inv, err := archive.Inventory(ctx, br)
	if err != nil {
		return nil, fmt.Errorf("delta base %s: %w", base, err)
	}
	return inv, nil
}
