package source

import (
	"bytes"
	"compress/gzip"
	"io"
	"strings"
	"testing"
)

// TestBombGuard: a stream that decompresses a thousand times its size is
// refused once past the floor, long before it is read to its end; an
// ordinary stream passes.
func TestBombGuard(t *testing.T) {
	gz := func(data []byte) []byte {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(data)
		zw.Close()
		return buf.Bytes()
	}
	random := make([]byte, 4<<20)
	for i := range random {
		random[i] = byte(i*2654435761>>13) ^ byte(i)
	}
	tests := []struct {
		name string
		blob []byte
		bomb bool
	}{
		{"zeros", gz(make([]byte, 64<<20)), true},
		{"ordinary data", gz(random), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &counting{r: bytes.NewReader(tt.blob)}
			zr, err := gzip.NewReader(in)
			if err != nil {
				t.Fatal(err)
			}
			g := &bombGuard{r: zr, in: in, floor: 1 << 20, ratio: 200}
			n, err := io.Copy(io.Discard, g)
			if tt.bomb {
				if err == nil || !strings.Contains(err.Error(), "compression bomb") {
					t.Fatalf("read %d bytes: %v", n, err)
				}
				if n > 8<<20 {
					t.Fatalf("read %d bytes before refusing", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
