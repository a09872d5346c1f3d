package source

import (
	"archive/tar"
	"bytes"
	"context"
	"testing"

	"github.com/divds/divds/scanner/layerfs"
)

func saveArchive(f *testing.F) []byte {
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	body := "Package: a\nVersion: 1\n\n"
	lw.WriteHeader(&tar.Header{Name: "var/lib/dpkg/status", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	lw.Write([]byte(body))
	lw.Close()
	files := map[string][]byte{
		"manifest.json": []byte(`[{"Config":"c.json","RepoTags":["x:1"],"Layers":["l/layer.tar"]}]`),
		"c.json":        []byte(`{"os":"linux","rootfs":{"diff_ids":["sha256:0"]},"history":[{"created_by":"x"}]}`),
		"l/layer.tar":   layer.Bytes(),
	}
	var out bytes.Buffer
	w := tar.NewWriter(&out)
	for _, n := range []string{"l/layer.tar", "manifest.json", "c.json"} {
		w.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg})
		w.Write(files[n])
	}
	w.Close()
	return out.Bytes()
}

// FuzzReadArchive: a malformed or hostile `docker save` stream gives an
// error or an image, never a panic or a hang.
func FuzzReadArchive(f *testing.F) {
	f.Add(saveArchive(f))
	f.Add([]byte{0x1f, 0x8b, 8, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		ReadArchive(context.Background(), bytes.NewReader(data), "", layerfs.Limits{MaxFile: 1 << 16, MaxTotal: 1 << 20, MaxEntries: 1000})
	})
}
