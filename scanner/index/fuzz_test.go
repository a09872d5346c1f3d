package index

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"github.com/divds/divds/internal/guard"
	"github.com/divds/divds/scanner/layerfs"
)

// fuzzPaths are the files whose content comes from the image's builder
// and goes straight to claircore's parsers.
var fuzzPaths = []string{
	"var/lib/dpkg/status", "lib/apk/db/installed", "etc/os-release",
	"etc/lsb-release", "etc/debian_version", "etc/alpine-release",
	"etc/redhat-release", "etc/system-release-cpe", "etc/apk/repositories",
	"var/lib/dpkg/status.d/pkg",
}

func layerOf(tb testing.TB, name string, body []byte) Layer {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "var/lib/dpkg/info/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
	tw.Write(body)
	tw.Close()
	fs, err := layerfs.FromTar(context.Background(), &buf, layerfs.Limits{})
	if err != nil {
		tb.Fatal(err)
	}
	return Layer{DiffID: "sha256:fuzz", Files: fs}
}

// FuzzIndex feeds arbitrary package databases and release files to the
// scanners. A panic never escapes Index. With DIVDS_FUZZ_STRICT=1 a panic
// that guard caught fails too, to find claircore's own bugs.
func FuzzIndex(f *testing.F) {
	f.Add(uint8(0), []byte("Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.11.dfsg-0ubuntu2\nArchitecture: amd64\nSource: zlib\n\n"))
	f.Add(uint8(1), []byte("P:musl\nV:1.1.18-r3\nA:x86_64\no:musl\n\nP:busybox\nV:1.27.2-r11\n"))
	f.Add(uint8(2), []byte("NAME=\"Ubuntu\"\nVERSION_ID=\"18.04\"\nID=ubuntu\nVERSION_CODENAME=bionic\n"))
	f.Add(uint8(3), []byte("DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=18.04\nDISTRIB_CODENAME=bionic\n"))
	f.Add(uint8(5), []byte("3.7.3\n"))
	f.Add(uint8(6), []byte("CentOS Linux release 7.5.1804 (Core)\n"))
	f.Add(uint8(7), []byte("cpe:/o:redhat:enterprise_linux:8::baseos\n"))
	strict := os.Getenv("DIVDS_FUZZ_STRICT") == "1"
	f.Fuzz(func(t *testing.T, sel uint8, body []byte) {
		l := layerOf(t, fuzzPaths[int(sel)%len(fuzzPaths)], body)
		_, err := Index(context.Background(), []Layer{l})
		var pe *guard.PanicError
		if strict && errors.As(err, &pe) {
			t.Fatalf("%v\n%s", err, pe.Stack)
		}
	})
}
