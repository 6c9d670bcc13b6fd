// Command images builds a container image from static binaries without a
// container daemon and writes it as a docker-archive tarball (what `docker
// load` and `ctr images import` read). `make images` builds eiplb-manager,
// eiplb-agent and the lab's test backend with it:
//
//	go run . -o eiplb-manager.tar -tag ghcr.io/eiplb/eiplb-manager:v1 \
//	  -file ../../bin/images/eiplb-manager=/eiplb-manager \
//	  -user 65532:65532 -entrypoint /eiplb-manager
//
// The image is one layer on an empty base: the files given, plus what
// gcr.io/distroless/static-debian12 (the Dockerfiles' base) holds that a
// static Go binary can use: /etc/passwd and /etc/group with root and
// nonroot (65532), /etc/nsswitch.conf, /tmp (1777) and /home/nonroot. It
// carries no CA bundle and no time zone data: eiplb talks TLS only to the
// API server, with the ServiceAccount's CA, and logs in UTC. The image
// format (manifest, config, layer digests) is go-containerregistry's; the
// build is reproducible (fixed times, sorted entries).
//
// It lives in its own module so the main module does not carry
// go-containerregistry for a build tool.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

// entry is a file or folder of the layer.
type entry struct {
	mode     int64
	uid, gid int
	dir      bool
	data     []byte
}

// base is what the distroless static base holds that a static binary can
// use.
func base() map[string]entry {
	return map[string]entry{
		"etc":               {mode: 0o755, dir: true},
		"etc/passwd":        {mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		"etc/group":         {mode: 0o644, data: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")},
		"etc/nsswitch.conf": {mode: 0o644, data: []byte("hosts: files dns\n")},
		"home":              {mode: 0o755, dir: true},
		"home/nonroot":      {mode: 0o700, dir: true, uid: 65532, gid: 65532},
		"root":              {mode: 0o700, dir: true},
		"tmp":               {mode: 0o1777, dir: true},
	}
}

func main() {
	var out, user, entrypoint string
	var tags, files multi
	flag.StringVar(&out, "o", "", "the docker-archive tarball to write")
	flag.Var(&tags, "tag", "the image's name and tag (repeatable)")
	flag.Var(&files, "file", "SRC=DEST: put file SRC at DEST in the image, mode 0755 (repeatable)")
	flag.StringVar(&user, "user", "", "the image's user (UID:GID), empty for root")
	flag.StringVar(&entrypoint, "entrypoint", "", "the image's entrypoint")
	flag.Parse()
	if out == "" || len(tags) == 0 || len(files) == 0 || entrypoint == "" {
		fmt.Fprintln(os.Stderr, "images: -o, -tag, -file and -entrypoint are required")
		os.Exit(2)
	}
	if err := build(out, tags, files, user, entrypoint); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func build(out string, tags, files []string, user, entrypoint string) error {
	fs := base()
	for _, f := range files {
		src, dest, ok := strings.Cut(f, "=")
		if !ok {
			return fmt.Errorf("-file %q: want SRC=DEST", f)
		}
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		dest = strings.TrimPrefix(path.Clean(dest), "/")
		for d := path.Dir(dest); d != "."; d = path.Dir(d) {
			if _, ok := fs[d]; !ok {
				fs[d] = entry{mode: 0o755, dir: true}
			}
		}
		fs[dest] = entry{mode: 0o755, data: b}
	}
	layerTar, err := tarOf(fs)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{entrypoint}
	cf.Config.User = user
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	refs := map[name.Reference]v1.Image{}
	for _, t := range tags {
		ref, err := name.NewTag(t)
		if err != nil {
			return err
		}
		refs[ref] = img
	}
	tmp := out + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, refs); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, out)
}

// tarOf writes the layer's files, folders first by path, with a fixed time
// so the layer's digest depends on the content only.
func tarOf(fs map[string]entry) ([]byte, error) {
	names := make([]string, 0, len(fs))
	for n := range fs {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, n := range names {
		e := fs[n]
		h := &tar.Header{Name: n, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: epoch, Format: tar.FormatPAX}
		if e.dir {
			h.Typeflag, h.Name = tar.TypeDir, n+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := w.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := w.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
