package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentmesh/meshnode/pki"
	meshnodev1 "github.com/agentmesh/meshnode/proto/meshnode/v1"
	"github.com/agentmesh/meshnode/transport"
	"go.step.sm/crypto/keyutil"
	"google.golang.org/protobuf/proto"
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

// joinWithToken asks the seeds, in turn, for a certificate, retrying while
// they are unreachable: seeds that are not up yet are normal at cluster
// start. A refusal (bad token) is final.
func (n *Node) joinWithToken(ctx context.Context) (*pki.Credentials, error) {
	tok, err := pki.ParseToken(n.cfg.Token)
	if err != nil {
		return nil, fmt.Errorf("--token: %w", err)
	}
	key, err := keyutil.GenerateDefaultSigner()
	if err != nil {
		return nil, err
	}
	req, err := pki.NewJoinRequest(n.cfg.Token, n.cfg.Name, key)
	if err != nil {
		return nil, fmt.Errorf("--token: %w", err)
	}
	if n.cfg.Server {
		req.Role = meshnodev1.JoinRole_JOIN_ROLE_SERVER
	} else if tok.Role == meshnodev1.JoinRole_JOIN_ROLE_SERVER {
		// The token allows either role and the node asks for one; an
		// operator who made a server token most likely forgot the flag.
		n.log.Warn("the join token admits a Raft server, but this node runs without --server: it joins as a client, and restarting it with --server later will not make it one (the token is used up); to make it a server, stop it, remove its data directory and join again with a new server token and --server")
	}
	body, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		for _, seed := range n.cfg.Join {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			out, err := transport.CallJoin(cctx, seed, pki.JoinClientTLS(tok), methodJoin, body)
			cancel()
			if err == nil {
				resp := &meshnodev1.JoinResponse{}
				if err := proto.Unmarshal(out, resp); err != nil {
					return nil, fmt.Errorf("join via %s: bad answer: %w", seed, err)
				}
				creds, err := pki.CredentialsFromJoin(tok, n.cfg.Name, key, resp, time.Now())
				if err != nil {
					return nil, fmt.Errorf("join via %s: %w", seed, err)
				}
				if err := creds.Save(n.cfg.DataDir); err != nil {
					return nil, err
				}
				n.log.Info("joined the cluster: certificate issued", "seed", seed, "trust_domain", tok.TrustDomain)
				return creds, nil
			}
			if isFinalJoinError(err) {
				return nil, fmt.Errorf("join via %s refused: %w", seed, err)
			}
			n.log.Warn("join attempt failed; will retry", "seed", seed, "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("join: no seed answered: %w", ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
