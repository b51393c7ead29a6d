"""Tests for agent.py's Connect framing; they need no node.

Run from this directory: python3 -m unittest
"""

import io
import json
import struct
import unittest

import agent


def frames_of(data, **kw):
    return list(agent.read_frames(io.BytesIO(data).read, **kw))


class TrickleReader:
    """Returns at most one byte per read, like a slow socket."""

    def __init__(self, data):
        self.buf = io.BytesIO(data)

    def read(self, n):
        return self.buf.read(min(n, 1))


class FramingTest(unittest.TestCase):
    def test_encode_layout(self):
        self.assertEqual(agent.encode_frame(b"{}"), b"\x00\x00\x00\x00\x02{}")
        self.assertEqual(agent.encode_frame(b"", flags=2), b"\x02\x00\x00\x00\x00")

    def test_round_trip(self):
        msgs = [b'{"ready":{}}', b"", b"x" * 70000]
        data = b"".join(agent.encode_frame(m) for m in msgs) + agent.encode_frame(b"{}", flags=2)
        self.assertEqual(frames_of(data), [(0, m) for m in msgs] + [(2, b"{}")])

    def test_short_reads(self):
        data = agent.encode_frame(b'{"a":1}') + agent.encode_frame(b'{"b":2}')
        self.assertEqual(list(agent.read_frames(TrickleReader(data).read)), [(0, b'{"a":1}'), (0, b'{"b":2}')])

    def test_stops_after_end_of_stream(self):
        data = agent.encode_frame(b"{}", flags=2) + agent.encode_frame(b"ignored")
        self.assertEqual(frames_of(data), [(2, b"{}")])

    def test_clean_eof_between_frames(self):
        self.assertEqual(frames_of(b""), [])
        self.assertEqual(frames_of(agent.encode_frame(b"1")), [(0, b"1")])

    def test_truncated_header(self):
        with self.assertRaises(agent.FrameError):
            frames_of(b"\x00\x00\x00")

    def test_truncated_body(self):
        with self.assertRaises(agent.FrameError):
            frames_of(b"\x00\x00\x00\x00\x05abc")

    def test_oversized_frame_is_refused_before_reading_it(self):
        with self.assertRaises(agent.FrameError):
            frames_of(struct.pack(">BI", 0, 1 << 31))
        with self.assertRaises(agent.FrameError):
            frames_of(agent.encode_frame(b"12345"), max_frame=4)

    def test_compressed_frame_is_refused(self):
        with self.assertRaises(agent.FrameError):
            frames_of(agent.encode_frame(b"{}", flags=1))


class MessagesTest(unittest.TestCase):
    def test_messages_and_clean_end(self):
        data = agent.encode_frame(b'{"ready":{"agentId":"n/a"}}') + agent.encode_frame(b"{}", flags=2)
        self.assertEqual(list(agent.messages(frames_of(data))), [{"ready": {"agentId": "n/a"}}])

    def test_end_of_stream_error_is_raised(self):
        end = json.dumps({"error": {"code": "permission_denied", "message": "not yours"}}).encode()
        data = agent.encode_frame(b"{}") + agent.encode_frame(end, flags=2)
        got = []
        with self.assertRaises(agent.ConnectError) as cm:
            for m in agent.messages(frames_of(data)):
                got.append(m)
        self.assertEqual(got, [{}])
        self.assertEqual(cm.exception.code, "permission_denied")
        self.assertTrue(cm.exception.permanent)

    def test_missing_end_of_stream_is_unavailable(self):
        with self.assertRaises(agent.ConnectError) as cm:
            list(agent.messages(frames_of(agent.encode_frame(b"{}"))))
        self.assertEqual(cm.exception.code, "unavailable")
        self.assertFalse(cm.exception.permanent)


class HelpersTest(unittest.TestCase):
    def test_parse_time_nanoseconds(self):
        self.assertAlmostEqual(agent.parse_time("1970-01-01T00:00:01.123456789Z"), 1.123456, places=6)
        self.assertEqual(agent.parse_time("1970-01-01T00:00:02Z"), 2.0)
        self.assertIsNone(agent.parse_time(None))

    def test_field_accepts_both_spellings(self):
        self.assertEqual(agent.field({"callId": "a"}, "callId", "call_id"), "a")
        self.assertEqual(agent.field({"call_id": "b"}, "callId", "call_id"), "b")


if __name__ == "__main__":
    unittest.main()
