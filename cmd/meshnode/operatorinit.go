package main

import (
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/agentmesh/meshnode/consensus"
	"github.com/agentmesh/meshnode/internal/opsign"
	"github.com/agentmesh/meshnode/operator"
	"github.com/agentmesh/meshnode/pki"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
)

// signerName is name, or when it is empty the operator the node's records
// say holds key.
func signerName(ctx context.Context, conn grpc.ClientConnInterface, key ed25519.PrivateKey, name string) (string, error) {
	if name != "" {
		return name, nil
	}
	tb, err := meshnodev1.NewOperatorServiceClient(conn).GetTrustBundle(ctx, &meshnodev1.GetTrustBundleRequest{})
	if err != nil {
		return "", fmt.Errorf("reading the trust bundle to find the key's operator: %w", err)
	}
	return opsign.NameOf(ctx, conn, key.Public().(ed25519.PublicKey), tb.GetBundle())
}

// recordSigner is the admin key that signs operator records from here, the
// admin's name and where the key came from.
func recordSigner(ctx context.Context, conn grpc.ClientConnInterface, cf *clientFlags) (ed25519.PrivateKey, string, string, error) {
	key, issuer, from, err := operatorKey(cf.absSocket())
	if err != nil {
		return nil, "", "", err
	}
	if key == nil {
		return nil, "", "", usagef("no operator key to sign the record with: pass --operator-key (an admin's)")
	}
	issuer, err = signerName(ctx, conn, key, issuer)
	return key, issuer, from, err
}

func newOperatorInitCmd() *cobra.Command {
	var dir, name string
	c := &cobra.Command{
		Use:   "init --dir CA_DIR",
		Short: "Create the first admin offline, beside the CA from `meshnode pki init`",
		Long: `Create the first admin offline: its key pair in CA_DIR/operator/NAME.key
(0600) and NAME.key.pub, and CA_DIR/trust-bundle.pb, which binds the CA's
root to the admin's public key. A server that bootstraps with --ca-dir CA_DIR
adopts that bundle: no operator key is ever on a server. Move the key to the
operator's machine (~/.config/meshnode/operator.key) and keep the trust bundle
wherever decisions and operators are verified.`,
		Example: `  meshnode pki init --dir ./ca --trust-domain prod.example
  meshnode operator init --dir ./ca
  meshnode run --ca-dir ./ca --trust-domain prod.example     # first server
  mv ./ca/operator/admin.key ~/.config/meshnode/operator.key  # on the operator's machine`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usagef("--dir CA_DIR: the directory `meshnode pki init` wrote")
			}
			pemBytes, err := os.ReadFile(filepath.Join(dir, pki.OfflineRootCert))
			if err != nil {
				return usagef("--dir %s: %v (run meshnode pki init --dir %s first)", dir, err, dir)
			}
			var roots [][]byte
			for rest := pemBytes; ; {
				var blk *pem.Block
				if blk, rest = pem.Decode(rest); blk == nil {
					break
				}
				roots = append(roots, blk.Bytes)
			}
			keyPath := filepath.Join(dir, "operator", name+".key")
			bundle, err := operator.InitOffline(keyPath, filepath.Join(dir, operator.OfflineBundleFile), name, roots)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "first admin %s: key %s (0600), public key %s.pub\ntrust bundle %s (%d root, cluster id %x)\n"+
				"start the first server with --ca-dir %s, then move the key off this machine\n",
				bundle.GetFirstAdminName(), keyPath, keyPath, filepath.Join(dir, operator.OfflineBundleFile), len(roots), operatorClusterID(bundle), dir)
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "the CA directory from meshnode pki init")
	c.Flags().StringVar(&name, "name", operator.FirstAdmin, "the first admin's operator name")
	return c
}

// operatorClusterID is the id admin commands are signed for, shortened for
// display.
func operatorClusterID(b *meshnodev1.TrustBundle) []byte {
	id := consensus.ClusterID(b)
	return id[:min(len(id), 8)]
}

func newOperatorRemoveCmd() *cobra.Command {
	var cf *clientFlags
	c := &cobra.Command{
		Use:   "remove NAME",
		Short: "Revoke an operator: a new version of its record that expires now",
		Long: `Revoke an operator: an admin signs a new version of its record that expires
now, so its signatures stop verifying, and so do the records it issued until
another admin signs them again. The last valid admin cannot be removed.`,
		Example: `  meshnode operator remove alice
  meshnode operator remove alice --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, ctx, done, err := cf.open()
			if err != nil {
				return err
			}
			defer done()
			key, issuer, from, err := recordSigner(ctx, conn, cf)
			if err != nil {
				return err
			}
			list, err := meshnodev1.NewOperatorServiceClient(conn).ListOperators(ctx, &meshnodev1.ListOperatorsRequest{})
			if err != nil {
				return rpcError("list operators", err, cf.socketPath())
			}
			var cur *meshnodev1.OperatorRecord
			var names []string
			for _, o := range list.GetOperators() {
				names = append(names, o.GetRecord().GetName())
				if o.GetRecord().GetName() == args[0] {
					cur = o.GetRecord()
				}
			}
			if cur == nil {
				return usagef("no operator named %q (operators: %s)", args[0], strings.Join(names, ", "))
			}
			rec := proto.CloneOf(cur)
			rec.Issuer, rec.Version, rec.NotAfterUnixNano = issuer, cur.GetVersion()+1, time.Now().UnixNano()
			sr, err := operator.SignRecord(issuer, key, rec)
			if err != nil {
				return err
			}
			resp, err := meshnodev1.NewOperatorServiceClient(conn).PutOperator(ctx, &meshnodev1.PutOperatorRequest{Record: sr})
			if err != nil {
				return rpcError("remove operator "+args[0], err, cf.socketPath())
			}
			if cf.json {
				return printJSON(cmd.OutOrStdout(), resp)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "operator %s removed at index %d, signed by %s (%s)\n", args[0], resp.GetIndex(), issuer, from)
			return nil
		},
	}
	cf = writeClientFlags(c)
	return c
}
