"""Tests for vote.py's encoding, journal and decision rule; no node needed.

The byte layouts are written out by hand here, independently of vote.py's
Encoder, from quorum/sign.go. The Go tests (vote_test.go) check the same
functions against quorum.NewVote itself.

Run from this directory: python3 -m unittest
"""

import base64
import hashlib
import json
import os
import struct
import tempfile
import unittest

import vote


def lp(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack(">I", len(b)) + b


def u32(n):
    return struct.pack(">I", n)


class EncodingTest(unittest.TestCase):
    def test_encoder_layout(self):
        e = vote.Encoder()
        e.str("ab")
        e.bytes(b"")
        e.u32(7)
        e.str("é")
        self.assertEqual(e.value(), b"\x00\x00\x00\x02ab" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x07" + b"\x00\x00\x00\x02\xc3\xa9")

    def test_terms_digest(self):
        rule = {"kind": "QUORUM_RULE_KIND_K_OF_N", "k": 3, "allowSharedHosts": True}
        electorate = [{"agentId": "n1/a", "node": "n1"}, {"agent_id": "n2/b", "node": "n2"}]
        want = hashlib.sha256(lp("meshnode/quorum/terms/v1") + lp("pay") + u32(2) + u32(3) + u32(1) + u32(2)
                              + lp("n1/a") + lp("n1") + lp("n2/b") + lp("n2")).digest()
        self.assertEqual(vote.terms_digest("pay", rule, electorate), want)

    def test_terms_digest_unset_rule_is_zero_not_bft(self):
        # Go hashes rule.GetKind() as written: an unset kind is 0 even
        # though it means BFT, so a voter must not fill the default in.
        want = hashlib.sha256(lp("meshnode/quorum/terms/v1") + lp("") + u32(0) * 4).digest()
        self.assertEqual(vote.terms_digest("", {}, []), want)
        self.assertNotEqual(vote.terms_digest("", {"kind": "QUORUM_RULE_KIND_BFT"}, []), want)

    def test_vote_message(self):
        v = {"clusterId": "c", "proposalId": "p", "payloadDigest": b"\x01" * 32, "termsDigest": b"\x02" * 32,
             "round": 5, "choice": 2, "voterAgentId": "n1/a", "voterNode": "n1", "reason": "no"}
        want = (lp("meshnode/quorum/vote/v1") + lp("c") + lp("p") + lp(b"\x01" * 32) + lp(b"\x02" * 32)
                + u32(5) + u32(2) + lp("n1/a") + lp("n1") + lp("no"))
        self.assertEqual(vote.vote_message(v), want)

    def test_fields_cannot_bleed_into_each_other(self):
        base = {"clusterId": "c", "proposalId": "ab", "payloadDigest": b"", "termsDigest": b"",
                "round": 0, "choice": 1, "voterAgentId": "x", "voterNode": "", "reason": ""}
        moved = dict(base, clusterId="ca", proposalId="b")
        self.assertNotEqual(vote.vote_message(base), vote.vote_message(moved))

    def test_enum_number(self):
        self.assertEqual(vote.enum_number("CHOICE_ABSTAIN", vote.CHOICES), 3)
        self.assertEqual(vote.enum_number(2, vote.RULE_KINDS), 2)
        with self.assertRaises(ValueError):
            vote.enum_number("QUORUM_RULE_KIND_NEW", vote.RULE_KINDS)

    def test_truncate_utf8(self):
        self.assertEqual(vote.truncate_utf8("short"), "short")
        s = "x" + "é" * 600  # 1201 bytes; byte 1024 is inside an "é"
        got = vote.truncate_utf8(s)
        self.assertEqual(len(got.encode()), 1023)
        self.assertTrue(s.startswith(got))


@unittest.skipIf(vote.Ed25519PrivateKey is None, vote.INSTALL_HINT)
class SigningTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def test_new_vote_signs_the_payload_shown(self):
        key = vote.load_or_create_key(os.path.join(self.dir.name, "s", "vote.key"))
        # The request's payloadDigest is a lie; the vote must sign the real one.
        proposal = {"id": "p", "kind": "k", "payload": base64.b64encode(b"shown").decode(),
                    "payloadDigest": base64.b64encode(b"\x00" * 32).decode(), "round": 3}
        v = vote.new_vote("c", proposal, 1, "ok", "n1/a", "n1", key)
        self.assertEqual(base64.b64decode(v["payloadDigest"]), hashlib.sha256(b"shown").digest())
        raw = dict(v, payloadDigest=base64.b64decode(v["payloadDigest"]), termsDigest=base64.b64decode(v["termsDigest"]))
        key.public_key().verify(base64.b64decode(v["signature"]), vote.vote_message(raw))

    def test_key_is_kept_and_private(self):
        path = os.path.join(self.dir.name, "s", "vote.key")
        a = vote.load_or_create_key(path)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertEqual(vote.public_key_b64(vote.load_or_create_key(path)), vote.public_key_b64(a))
        os.chmod(path, 0o644)
        with self.assertRaisesRegex(vote.VoteError, "chmod 600"):
            vote.load_or_create_key(path)


class JournalTest(unittest.TestCase):
    def setUp(self):
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        self.dir = os.path.join(d.name, "votes")

    def test_one_vote_per_proposal(self):
        j = vote.Journal(self.dir)
        first = j.vote_once("p", lambda: {"proposalId": "p", "round": 0})
        self.assertEqual(j.vote_once("p", lambda: self.fail("signed twice")), first)
        # A restarted agent (a new Journal on the same directory) too.
        self.assertEqual(vote.Journal(self.dir).vote_once("p", lambda: self.fail("signed after restart")), first)
        name = hashlib.sha256(b"p").hexdigest() + ".vote"
        self.assertEqual(os.listdir(self.dir), [name])
        self.assertEqual(os.stat(os.path.join(self.dir, name)).st_mode & 0o777, 0o600)

    def test_damaged_vote_casts_nothing(self):
        j = vote.Journal(self.dir)
        with open(j.path("p"), "w") as f:
            f.write("{not json")
        with self.assertRaises(vote.VoteError):
            j.vote_once("p", lambda: self.fail("signed over a damaged journal"))


class DecideTest(unittest.TestCase):
    def proposal(self, payload):
        return {"payload": base64.b64encode(json.dumps(payload).encode()).decode()}

    def test_default_approves(self):
        self.assertEqual(vote.decide(self.proposal({"amount": 10 ** 9}))[0], 1)
        self.assertEqual(vote.decide({}, "reject")[0], 2)

    def test_max_amount(self):
        self.assertEqual(vote.decide(self.proposal({"amount": 100}), max_amount=100)[0], 1)
        self.assertEqual(vote.decide(self.proposal({"amount": 100.5}), max_amount=100)[0], 2)
        self.assertEqual(vote.decide(self.proposal({"amount": "lots"}), max_amount=100)[0], 2)
        self.assertEqual(vote.decide(self.proposal({"note": "no amount"}), max_amount=100)[0], 1)
        self.assertEqual(vote.decide(self.proposal({"amount": 1}), "reject", max_amount=100)[0], 2)


if __name__ == "__main__":
    unittest.main()
