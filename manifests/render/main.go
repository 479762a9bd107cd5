package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/extauthz/extauthz/manifests"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("render", flag.ContinueOnError)
	out := fs.String("out", "", "write each kustomization to `DIR`/<name>.yaml instead of stdout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dirs := fs.Args()
	if len(dirs) == 0 {
		for _, k := range manifests.Kustomizations {
			dirs = append(dirs, filepath.Join("manifests", k))
		}
	}
	if *out != "" {
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return err
		}
	}
	for i, dir := range dirs {
		y, err := manifests.Render(dir)
		if err != nil {
			return err
		}
		if *out != "" {
			name := filepath.Join(*out, filepath.Base(filepath.Clean(dir))+".yaml")
			if err := os.WriteFile(name, y, 0o644); err != nil {
				return err
			}
			fmt.Fprintln(stdout, name)
			continue
		}
		var b bytes.Buffer
		if i > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, "# Source: %s\n", filepath.ToSlash(dir))
		b.Write(y)
		if _, err := stdout.Write(b.Bytes()); err != nil {
			return err
		}
	}
	return nil
}
