package topology_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kcqrs/kcqrs/config"
	"github.com/kcqrs/kcqrs/internal/examples"
	"github.com/kcqrs/kcqrs/topology"
	"github.com/kcqrs/kcqrs/topology/topologytest"
	"github.com/kcqrs/kcqrs/wire"
)

// testCA writes a CA certificate and a client certificate and key signed
// by it to dir, and returns their files with the CA pool and a server
// certificate for 127.0.0.1 signed by it.
func testCA(t *testing.T, dir string) (caFile, certFile, keyFile string, pool *x509.CertPool, server tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kcqrs test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cliKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cli := &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "worker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	cliDER, err := x509.CreateCertificate(rand.Reader, cli, caCert, &cliKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cliKeyDER, err := x509.MarshalPKCS8PrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	for f, b := range map[string]*pem.Block{
		caFile:   {Type: "CERTIFICATE", Bytes: caDER},
		certFile: {Type: "CERTIFICATE", Bytes: cliDER},
		keyFile:  {Type: "PRIVATE KEY", Bytes: cliKeyDER},
	} {
		if err := os.WriteFile(f, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool = x509.NewCertPool()
	pool.AddCert(caCert)
	return caFile, certFile, keyFile, pool, tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}
}

// workerPermissions are the permissions of worker w0 of the default group:
// the single source of truth the start-up check and the README use.
func workerPermissions() []topology.Permission {
	return topology.ProcessorPermissions(topology.Config{InstanceID: "w0"})
}

// workerACLs are exactly the ACLs of workerPermissions.
func workerACLs() []kfake.ACL { return topologytest.ACLs(workerPermissions()) }

// secureHarness starts a broker that requires mutual TLS and SASL with
// ACLs: the superuser "admin" (SCRAM-SHA-256, used by the test's own
// clients) and the worker user "worker" (mechanism) with acls.
func secureHarness(t *testing.T, mechanism string, acls []kfake.ACL) (*topologytest.Harness, config.Kafka) {
	t.Helper()
	dir := t.TempDir()
	caFile, certFile, keyFile, pool, srvCert := testCA(t, dir)
	reg, err := examples.Registry()
	if err != nil {
		t.Fatal(err)
	}
	admin := config.Kafka{Brokers: []string{"127.0.0.1:1"}, TLSCAFile: caFile, TLSCertFile: certFile, TLSKeyFile: keyFile, SASLMechanism: config.SASLScramSHA256, SASLUser: "admin", SASLPassword: "admin-secret"}
	adminOpts, err := admin.Opts()
	if err != nil {
		t.Fatal(err)
	}
	h := topologytest.NewWithOptions(t, reg, topologytest.Options{
		Partitions: partitions,
		BrokerOpts: []kfake.Opt{
			kfake.TLS(&tls.Config{Certificates: []tls.Certificate{srvCert}, MinVersion: tls.VersionTLS12,
				ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}),
			kfake.EnableSASL(),
			kfake.Superuser(config.SASLScramSHA256, "admin", "admin-secret"),
			kfake.User(mechanism, "worker", "worker-secret", acls...),
			kfake.EnableACLs(),
		},
		ClientOpts: adminOpts[1:], // TLS and SASL; the seeds are the harness's
	})
	worker := config.Kafka{Brokers: h.Brokers, TLSCAFile: caFile, TLSCertFile: certFile, TLSKeyFile: keyFile, SASLMechanism: mechanism, SASLUser: "worker", SASLPassword: "worker-secret"}
	return h, worker
}

func startWorker(t *testing.T, h *topologytest.Harness, k config.Kafka) *topologytest.Running {
	t.Helper()
	opts, err := k.Opts()
	if err != nil {
		t.Fatal(err)
	}
	return h.StartProcessor("w0", "", func(c *topology.Config) { c.ClientOpts = opts })
}

// TestWorkerOverTLSAndSASL: a worker with exactly the documented ACLs, over
// mutual TLS with SASL (each mechanism), creates its topics and handles
// commands. Without its client certificate it cannot connect at all.
func TestWorkerOverTLSAndSASL(t *testing.T) {
	t.Parallel()
	for _, mech := range []string{config.SASLScramSHA256, config.SASLScramSHA512, config.SASLPlain} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			h, worker := secureHarness(t, mech, workerACLs())
			w := startWorker(t, h, worker)
			wantStatus(t, h.Send(cmd("account", "s1", "OpenAccount", `{"owner":"Sec","currency":"EUR"}`)), wire.StatusAccepted, 1)
			wantStatus(t, h.Send(cmd("account", "s1", "Deposit", `{"amount":5}`)), wire.StatusAccepted, 2)
			if err := w.Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("no client certificate", func(t *testing.T) {
		t.Parallel()
		_, worker := secureHarness(t, config.SASLScramSHA256, workerACLs())
		worker.TLSCertFile, worker.TLSKeyFile = "", ""
		opts, err := worker.Opts()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := cl.Ping(ctx); err == nil {
			t.Fatal("connected without a client certificate")
		}
	})
}

// TestMissingACLIsNamed: a worker lacking any one of its documented
// permissions refuses to start and names exactly that operation and
// resource, and no permission it was granted.
func TestMissingACLIsNamed(t *testing.T) {
	t.Parallel()
	all := workerPermissions()
	for i, p := range all {
		t.Run(p.Operation.String()+" "+p.ResourceType.String()+" "+p.Resource, func(t *testing.T) {
			t.Parallel()
			h, worker := secureHarness(t, config.SASLScramSHA256, topologytest.ACLs(topologytest.Without(all, i)))
			w := startWorker(t, h, worker)
			select {
			case <-w.Done():
			case <-time.After(90 * time.Second):
				t.Fatal("a worker without the needed ACLs kept running")
			}
			var pe *topology.PermissionError
			if !errors.As(w.Err(), &pe) {
				t.Fatalf("Run: %v\nwant a PermissionError naming %s", w.Err(), p)
			}
			named := false
			for _, m := range pe.Missing {
				if m.Operation == p.Operation && m.ResourceType == p.ResourceType && m.Resource == p.Resource {
					named = true
					continue
				}
				for j, g := range all {
					if j != i && g.Operation == m.Operation && g.ResourceType == m.ResourceType && g.Resource == m.Resource {
						t.Errorf("granted %s is reported missing", g)
					}
				}
			}
			if !named || !strings.Contains(w.Err().Error(), "kafka-acls.sh") {
				t.Fatalf("Run: %v\nwant it to name %s", w.Err(), p)
			}
		})
	}
}
