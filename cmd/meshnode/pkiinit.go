package main

import (
	"fmt"
	"time"

	"github.com/agentmesh/meshnode/pki"
	"github.com/spf13/cobra"
)

func newPKICmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "pki",
		Short:   "Offline CA material for operators who keep the root key off the cluster",
		Example: `  meshnode pki init --dir ./ca --trust-domain prod.example`,
	}
	var dir, td string
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Write a new root and intermediate CA into a directory",
		Long: `Write a new root CA and an intermediate CA for the trust domain into --dir
(keys 0600, certificates 0644). Start the first server with --ca-dir pointing at
the directory: the cluster signs with the intermediate, and root_ca.key can then
be moved offline. Existing files are never overwritten.`,
		Example: `  meshnode pki init --dir ./ca --trust-domain prod.example
  meshnode run --ca-dir ./ca --trust-domain prod.example`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usagef("--dir is required")
			}
			if err := pki.ValidateTrustDomain(td); err != nil {
				return usagef("--trust-domain: %v", err)
			}
			if err := pki.InitOffline(dir, td, time.Now()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s/{%s,%s,%s,%s}\nmove %s offline once the first server has started with --ca-dir %s\n",
				dir, pki.OfflineRootCert, pki.OfflineRootKey, pki.OfflineIntermediateCert, pki.OfflineIntermediateKey, pki.OfflineRootKey, dir)
			return nil
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", "", "directory to write the CA files into (created 0700)")
	initCmd.Flags().StringVar(&td, "trust-domain", "meshnode.local", "SPIFFE trust domain of the cluster")
	cmd.AddCommand(initCmd)
	return cmd
}
