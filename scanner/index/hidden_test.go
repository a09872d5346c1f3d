package index

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/divds/divds/scanner/layerfs"
)

// tarLayer builds a layer from tar entries: name -> body, where a body of
// "\x00whiteout" writes overlay's whiteout of name.
func tarLayer(t *testing.T, id string, files map[string]string) Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		body := files[n]
		if body == "\x00whiteout" {
			i := strings.LastIndex(n, "/")
			n = n[:i+1] + ".wh." + n[i+1:]
			body = ""
		}
		tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
		tw.Write([]byte(body))
	}
	tw.Close()
	fs, err := layerfs.FromTar(context.Background(), &buf, layerfs.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return Layer{DiffID: id, Files: fs}
}

func stanza(name, version string) string {
	return "Package: " + name + "\nStatus: install ok installed\nArchitecture: amd64\nVersion: " + version + "\n\n"
}

// TestHiddenPackages: a later layer that replaces dpkg's database with a
// shorter one (COPY of an empty status, no RUN) keeps every file of the
// packages it drops: they still count. A package dpkg removed lost its
// file list, and does not.
func TestHiddenPackages(t *testing.T) {
	base := tarLayer(t, "sha256:base", map[string]string{
		"etc/os-release":                 "ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
		"var/lib/dpkg/status":            stanza("openssl", "1.0") + stanza("bash", "5.0") + stanza("gcc", "12"),
		"var/lib/dpkg/info/openssl.list": "/usr/bin/openssl\n",
		"var/lib/dpkg/info/bash.list":    "/bin/bash\n",
		"var/lib/dpkg/info/gcc.list":     "/usr/bin/gcc\n",
	})
	tests := []struct {
		name    string
		top     map[string]string
		want    []string
		warning string
	}{
		{"database emptied", map[string]string{"var/lib/dpkg/status": ""},
			[]string{"bash", "gcc", "openssl"}, "no longer lists 3 packages"},
		{"database shortened", map[string]string{"var/lib/dpkg/status": stanza("bash", "5.0")},
			[]string{"bash", "gcc", "openssl"}, "no longer lists 2 packages"},
		{"removed by dpkg", map[string]string{"var/lib/dpkg/status": stanza("bash", "5.0") + stanza("openssl", "1.0"),
			"var/lib/dpkg/info/gcc.list": "\x00whiteout"}, []string{"bash", "openssl"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Index(context.Background(), []Layer{base, tarLayer(t, "sha256:top", tt.top)})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range res.Packages {
				got = append(got, p.Name)
				if p.Name == "gcc" && p.Layer != 0 {
					t.Errorf("gcc attributed to layer %d, want the base", p.Layer)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("packages %v, want %v", got, tt.want)
			}
			warned := strings.Join(res.Warnings, "\n")
			if (tt.warning == "") != !strings.Contains(warned, "no longer lists") || !strings.Contains(warned, tt.warning) {
				t.Fatalf("warnings %q, want %q", warned, tt.warning)
			}
		})
	}
}

// TestTooManyPackages: a database listing more packages than any real
// image is a scan error naming the limit, not minutes of matching.
func TestTooManyPackages(t *testing.T) {
	var b strings.Builder
	for i := range MaxPackages + 1 {
		fmt.Fprintf(&b, "Package: p%d\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n\n", i)
	}
	_, err := Index(context.Background(), []Layer{tarLayer(t, "sha256:many", map[string]string{
		"etc/os-release":      "ID=debian\nVERSION_ID=\"12\"\n",
		"var/lib/dpkg/status": b.String(),
	})})
	if err == nil || !strings.Contains(err.Error(), "more than the 100000 allowed") {
		t.Fatalf("got %v", err)
	}
}
