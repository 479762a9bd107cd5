package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/extauthz/extauthz/keystore"
)

// runBackup runs "extauthz backup --out FILE": it downloads a consistent
// online copy of the admin's store (GET /api/v1/backup) into FILE, and
// keeps it only once it opens as a store file and passes bbolt's
// consistency check.
func runBackup(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var out string
	cli, _, err := parseCLI("backup", "", args, getenv, stderr, func(f *flag.FlagSet) {
		f.StringVar(&out, "out", "", "file the backup is written to (required; replaced only by a verified backup)")
	})
	if err != nil {
		return err
	}
	if out == "" {
		fmt.Fprintln(stderr, "extauthz backup: --out is required")
		return errUsage
	}
	resp, err := cli.send(func(base string) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/backup", nil)
		if err == nil {
			req.Header.Set("Authorization", "Bearer "+cli.token)
		}
		return req, err
	}, true)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("admin API: %s", resp.Status)
	}
	tmp := out + ".part"
	defer os.Remove(tmp) // nothing left after the rename
	if err := writeNew(tmp, resp.Body); err != nil {
		return fmt.Errorf("backup: download: %w", err)
	}
	info, err := verifyStoreFile(tmp)
	if err != nil {
		return fmt.Errorf("backup: the download is not a whole store: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(stdout, "backup of store %s at revision %d written to %s\n", info.StoreID(), info.Revision(), out)
	return nil
}

// verifiedStore is what verifyStoreFile read from a store file.
type verifiedStore interface {
	StoreID() string
	Revision() uint64
}

// verifyStoreFile opens path as a store file and runs bbolt's consistency
// check on it.
func verifyStoreFile(path string) (verifiedStore, error) {
	st, err := keystore.Open(path, keystore.Options{})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return st, st.Check()
}

// runRestore runs "extauthz restore --from FILE --data-dir DIR": with the
// admin stopped, it puts a backup in place of DIR/extauthz.db as a new
// history (keystore.Restore), so that every sidecar loads a new snapshot
// when it next reaches the admin.
// --from - reads the backup from stdin (kubectl run -i into an image
// without a shell).
func runRestore(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newFlagSet("restore", "", stderr)
	var from, dataDir string
	f.StringVar(&from, "from", "", "backup file written by extauthz backup, or - for stdin (required)")
	f.StringVar(&dataDir, "data-dir", "/var/lib/extauthz", "data directory of the admin, which must not be running")
	if err := parseFlags(f, args, getenv); err != nil {
		return err
	}
	if from == "" || f.NArg() > 0 {
		fmt.Fprintln(stderr, "extauthz restore: --from FILE is required, and nothing else")
		return errUsage
	}
	path := filepath.Join(dataDir, adminStoreFile)
	if from == "-" {
		from = path + ".upload"
		defer os.Remove(from)
		if err := writeNew(from, stdin); err != nil {
			return fmt.Errorf("restore: reading the backup from stdin: %w", err)
		}
	}
	r, err := keystore.Restore(from, path, keystore.Options{})
	if errors.Is(err, keystore.ErrLocked) {
		return fmt.Errorf("restore: %s is in use: stop the admin first: %w", path, err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %s at revision %d as the new history %s; sidecars load a new snapshot when they next reach the admin\n", path, r.Revision, r.StoreID)
	return nil
}

// writeNew writes r to a new file at path (replacing a leftover) and syncs it.
func writeNew(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	return errors.Join(err, f.Sync(), f.Close())
}
