package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/agentmesh/meshnode/internal/dashboard"

	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

func TestViewerAllowed(t *testing.T) {
	key := func() ed25519.PublicKey { p, _, _ := ed25519.GenerateKey(nil); return p }
	first, viewer, policy, bad, stranger := key(), key(), key(), key(), key()
	trust := &meshnodev1.TrustBundle{FirstAdminName: "root", FirstAdminPublicKey: first}
	ops := []*meshnodev1.OperatorInfo{
		{Record: &meshnodev1.OperatorRecord{Name: "vee", PublicKey: viewer, Roles: []string{"viewer"}}},
		{Record: &meshnodev1.OperatorRecord{Name: "pol", PublicKey: policy, Roles: []string{"policy"}}},
		{Record: &meshnodev1.OperatorRecord{Name: "old", PublicKey: bad, Roles: []string{"viewer"}}, Problem: "expired"},
	}
	for _, tc := range []struct {
		name string
		pub  ed25519.PublicKey
		as   string
		ok   bool
		why  string
	}{
		{"first admin", first, "", true, "root"},
		{"viewer", viewer, "", true, "vee"},
		{"viewer by name", viewer, "vee", true, "vee"},
		{"viewer key under another name", viewer, "pol", false, "no operator"},
		{"policy only", policy, "", false, "roles are [policy]"},
		{"expired record", bad, "", false, "expired"},
		{"unknown key", stranger, "", false, "no operator"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			why, ok := viewerAllowed(tc.pub, tc.as, trust, ops)
			if ok != tc.ok || !strings.Contains(why, tc.why) {
				t.Fatalf("viewerAllowed = %q, %v; want %v containing %q", why, ok, tc.ok, tc.why)
			}
		})
	}
}

func TestDashboardListenLoopbackOnly(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:0": true, "[::1]:8080": true, "0.0.0.0:80": false, ":8080": false, "10.0.0.1:80": false, "localhost:80": false} {
		if err := checkLoopback(addr); (err == nil) != ok {
			t.Errorf("checkLoopback(%q) = %v; want ok=%v", addr, err, ok)
		}
	}
}

// TestSocketSourceUnreachable: with no node on the socket, every read is
// ErrUnreachable (the page's "retrying" case), through a real gRPC client.
func TestSocketSourceUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s := &socketSource{conn: conn, socket: sock}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for name, read := range map[string]func() error{
		"traffic": func() error { _, err := s.Traffic(ctx); return err },
		"status":  func() error { _, err := s.Status(ctx); return err },
		"bundle":  func() error { _, err := s.Bundle(ctx, "d1"); return err },
	} {
		if err := read(); !errors.Is(err, dashboard.ErrUnreachable) {
			t.Errorf("%s with no node: %v; want ErrUnreachable", name, err)
		}
	}
}
