package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/agentmesh/meshnode/pki"
	"github.com/agentmesh/meshnode/transport"
)

// acquireCredentials returns the node's certificate: the one on disk while
// it is valid; otherwise a new cluster's (bootstrap) or one obtained with a
// join token. For a bootstrap, the CA material is returned too, to be
// stored in Raft once it runs.
func (n *Node) acquireCredentials(ctx context.Context) (*pki.Credentials, *pki.CAMaterial, error) {
	creds, err := pki.LoadCredentials(n.cfg.DataDir)
	switch {
	case err == nil:
		if _, cerr := creds.Check(creds.Leaf().URIs[0].Host, time.Now()); cerr == nil {
			if n.cfg.Token != "" {
				n.log.Info("reusing the certificate on disk; --token is not needed and was not used")
			}
			return creds, nil, nil
		} else if len(n.cfg.Join) == 0 {
			return nil, nil, fmt.Errorf("the node certificate in %s is no longer valid (%v); restore a backup of the data dir or start a new cluster in an empty one", pki.Dir(n.cfg.DataDir), cerr)
		} else if n.cfg.Token == "" {
			return nil, nil, fmt.Errorf("the node certificate in %s is no longer valid (%v); get a new token with 'meshnode token create --name %s' and pass it with --token", pki.Dir(n.cfg.DataDir), cerr, n.cfg.Name)
		}
	case !errors.Is(err, pki.ErrNoCredentials):
		return nil, nil, err
	}
	if len(n.cfg.Join) == 0 {
		mem := pki.NewMemStore()
		if n.cfg.CADir != "" {
			m, err := pki.LoadOfflineCA(n.cfg.CADir, n.cfg.TrustDomain)
			if err != nil {
				return nil, nil, fmt.Errorf("--ca-dir: %w", err)
			}
			if err := mem.SaveCA(ctx, m); err != nil {
				return nil, nil, err
			}
		}
		caCfg := pki.DefaultCAConfig()
		caCfg.TrustDomain, caCfg.Store, caCfg.CertLifetime, caCfg.Logger = n.cfg.TrustDomain, mem, n.cfg.CertLifetime, n.log
		_, creds, err := pki.BootstrapWith(ctx, caCfg, n.cfg.Name, n.cfg.DataDir)
		if err != nil {
			return nil, nil, fmt.Errorf("bootstrap the cluster CA: %w", err)
		}
		m, err := mem.LoadCA(ctx)
		if err != nil {
			return nil, nil, err
		}
		n.log.Info("created a new cluster CA", "trust_domain", n.cfg.TrustDomain)
		return creds, m, nil
	}
	if n.cfg.Token == "" {
		return nil, nil, errors.New("this node has no certificate yet: create a token on a cluster server with 'meshnode token create' and pass it with --token")
	}
	creds, err = n.joinWithToken(ctx)
	if err != nil {
		return nil, nil, err
	}
	return creds, nil, nil
}

// joinWithToken gets a certificate from the seeds with the join token;
// pki.Join owns the retries and which refusals are final.
func (n *Node) joinWithToken(ctx context.Context) (*pki.Credentials, error) {
	if _, err := pki.ParseToken(n.cfg.Token); err != nil {
		return nil, fmt.Errorf("--token: %w", err)
	}
	return pki.Join(ctx, pki.JoinConfig{
		Seeds: n.cfg.Join, Token: n.cfg.Token, Name: n.cfg.Name, Server: n.cfg.Server, DataDir: n.cfg.DataDir,
		Call: func(ctx context.Context, seed string, tlsConf *tls.Config, body []byte) ([]byte, error) {
			return transport.CallJoin(ctx, seed, tlsConf, methodJoin, body)
		},
		Logger: n.log,
	})
}
