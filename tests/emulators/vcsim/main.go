// cloudmem-vcsim: govmomi's vCenter/ESXi simulator (package simulator) behind a front handler of ours, for the
// vSphere connector tests. What it adds to the stock simulator:
//   - it listens where we say (-listen 127.0.0.1:0 by default) and prints one JSON line describing itself
//     (url, TLS thumbprint, datastore directories) so the tests can find it;
//   - a snapshot with memory gets real state files: after CreateSnapshot_Task, the empty NAME-SnapshotN.vmsn the
//     simulator created is replaced by a copy of -seed-vmsn and NAME-SnapshotN.vmem (a copy of -seed-vmem) is put
//     beside it, the way ESXi writes a memory snapshot. With -memory-key (default) the .vmem is also listed in
//     layoutEx.file (type snapshotMemory) and layoutEx.snapshot[].memoryKey points at it, as on ESXi; without it
//     memoryKey stays -1 (the simulator's own shape) and only the sibling file exists;
//   - RemoveSnapshot_Task also deletes a sibling .vmem the simulator does not know about;
//   - it exits (removing its temporary datastores) when standard input closes or on SIGINT/SIGTERM.
// Seeds are copied, never linked: a PUT through /folder truncates the target, and the fixtures are evidence.
package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

type description struct {
	URL        string            `json:"url"`
	Thumbprint string            `json:"thumbprint,omitempty"`
	Datastores map[string]string `json:"datastores"`
	Model      string            `json:"model"`
}

var (
	seedVmsn  = flag.String("seed-vmsn", "", "file copied over each new memory snapshot's .vmsn")
	seedVmem  = flag.String("seed-vmem", "", "file copied as each new memory snapshot's .vmem")
	memoryKey = flag.Bool("memory-key", true, "list the .vmem in layoutEx (memoryKey) as ESXi does")
	mu        sync.Mutex
	seeded    = map[string]bool{}
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	useTLS := flag.Bool("tls", false, "serve HTTPS with the simulator's self-signed certificate")
	esx := flag.Bool("esx", false, "simulate a standalone ESXi host instead of vCenter")
	flag.Parse()
	log.SetOutput(os.Stderr)

	model := simulator.VPX()
	name := "vpx"
	if *esx {
		model = simulator.ESX()
		name = "esx"
	}
	if err := model.Create(); err != nil {
		log.Fatalf("create model: %v", err)
	}
	defer model.Remove()

	if *useTLS {
		model.Service.TLS = new(tls.Config)
	}
	inner := model.Service.NewServer() // starts on its own loopback port; we serve the same mux on ours
	defer inner.Close()

	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	scheme := "http"
	desc := description{Datastores: map[string]string{}, Model: name}
	if *useTLS {
		cert := inner.Server.TLS.Certificates[0]
		sum := sha256.Sum256(cert.Certificate[0])
		desc.Thumbprint = strings.ToUpper(hex.EncodeToString(sum[:]))
		listener = tls.NewListener(listener, &tls.Config{Certificates: []tls.Certificate{cert}})
		scheme = "https"
	}
	desc.URL = fmt.Sprintf("%s://%s/sdk", scheme, listener.Addr().String())
	for _, e := range simulator.Map.All("Datastore") {
		ds := e.(*simulator.Datastore)
		desc.Datastores[ds.Name] = ds.Info.GetDatastoreInfo().Url
	}

	server := &http.Server{Handler: front(model.Service.ServeMux)}
	go func() { _ = server.Serve(listener) }()

	line, _ := json.Marshal(desc)
	fmt.Println(string(line))

	done := make(chan struct{}, 1)
	go func() { _, _ = io.Copy(ioutil.Discard, os.Stdin); done <- struct{}{} }()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-done:
	case <-signals:
	}
	_ = server.Close()
}

// front serves the simulator's mux and runs our hooks after the SOAP methods that need them.
func front(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := ""
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/sdk") {
			body, err := ioutil.ReadAll(r.Body)
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			r.Body = ioutil.NopCloser(bytes.NewReader(body))
			switch {
			case bytes.Contains(body, []byte("CreateSnapshot_Task")):
				method = "create"
			case bytes.Contains(body, []byte("RemoveSnapshot_Task")):
				method = "remove"
			}
		}
		mux.ServeHTTP(w, r) // the simulator runs tasks before it answers
		switch method {
		case "create":
			seedSnapshots()
		case "remove":
			removeOrphanMemory()
		}
	})
}

func datastoreDir(name string) string {
	for _, e := range simulator.Map.All("Datastore") {
		ds := e.(*simulator.Datastore)
		if ds.Name == name {
			return ds.Info.GetDatastoreInfo().Url
		}
	}
	return ""
}

func seedSnapshots() {
	if *seedVmsn == "" || *seedVmem == "" {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	for _, e := range simulator.Map.All("VirtualMachine") {
		vm := e.(*simulator.VirtualMachine)
		simulator.Map.WithLock(vm, func() {
			for i := range vm.LayoutEx.Snapshot {
				snap := &vm.LayoutEx.Snapshot[i]
				if seeded[snap.Key.Value] || snap.MemoryKey >= 0 {
					continue
				}
				for j := range vm.LayoutEx.File {
					file := &vm.LayoutEx.File[j]
					if file.Key != snap.DataKey {
						continue
					}
					var p object.DatastorePath
					if !p.FromString(file.Name) {
						continue
					}
					dir := datastoreDir(p.Datastore)
					vmsn := filepath.Join(dir, p.Path)
					vmem := strings.TrimSuffix(vmsn, ".vmsn") + ".vmem"
					vmsnSize, err := copyFile(*seedVmsn, vmsn)
					if err != nil {
						log.Printf("seed %s: %v", vmsn, err)
						continue
					}
					vmemSize, err := copyFile(*seedVmem, vmem)
					if err != nil {
						log.Printf("seed %s: %v", vmem, err)
						continue
					}
					file.Size, file.UniqueSize = vmsnSize, vmsnSize
					seeded[snap.Key.Value] = true
					if *memoryKey {
						key := nextKey(vm.LayoutEx.File)
						memPath := &object.DatastorePath{Datastore: p.Datastore, Path: strings.TrimSuffix(p.Path, ".vmsn") + ".vmem"}
						vm.LayoutEx.File = append(vm.LayoutEx.File, types.VirtualMachineFileLayoutExFileInfo{
							Key:        key,
							Name:       memPath.String(),
							Type:       string(types.VirtualMachineFileLayoutExFileTypeSnapshotMemory),
							Size:       vmemSize,
							UniqueSize: vmemSize,
							Accessible: types.NewBool(true),
						})
						vm.LayoutEx.Snapshot[i].MemoryKey = key
					}
					break
				}
			}
		})
	}
}

func nextKey(files []types.VirtualMachineFileLayoutExFileInfo) int32 {
	var key int32
	for _, f := range files {
		if f.Key >= key {
			key = f.Key + 1
		}
	}
	return key
}

func removeOrphanMemory() {
	mu.Lock()
	defer mu.Unlock()
	for _, dir := range simulator.Map.All("Datastore") {
		root := dir.(*simulator.Datastore).Info.GetDatastoreInfo().Url
		_ = filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() && strings.HasSuffix(path, ".vmem") && strings.Contains(filepath.Base(path), "-Snapshot") {
				if _, statErr := os.Stat(strings.TrimSuffix(path, ".vmem") + ".vmsn"); os.IsNotExist(statErr) {
					_ = os.Remove(path)
				}
			}
			return nil
		})
	}
}

func copyFile(from, to string) (int64, error) {
	in, err := os.Open(from)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if closeErr := out.Close(); err == nil {
		err = closeErr
	}
	return n, err
}
