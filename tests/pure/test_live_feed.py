"""The websockets' live feed (maestro.live_feed): one plain subscription per followed
agent, up to a limit; every sample pushed once, in order, whichever way it came."""

from __future__ import annotations

import asyncio

import paho.mqtt.client as mqtt
import pytest

from arete.payloads import Sample, encode, encode_metrics
from arete.topics import Topics
from maestro.live_feed import LiveFeed, LiveSample, Newest

TOPICS = Topics()


class FakeLink:
    def __init__(self) -> None:
        self.live: list[str] = []

    def follow_live(self, topic: str) -> None:
        self.live.append(topic)

    def unfollow_live(self, topic: str) -> None:
        self.live.remove(topic)


def sample(seq: int) -> Sample:
    return Sample(ts=1_700_000_000.0 + seq, seq=seq, cpu=1.0, mem=2.0, disk=3.0)


def plain_message(
    agent: str, epoch: int, seqs: list[int], *, replay: bool = False
) -> mqtt.MQTTMessage:
    message = mqtt.MQTTMessage(topic=TOPICS.metrics(agent).encode())
    message.payload = encode_metrics(
        epoch=epoch, samples=[encode(sample(s)) for s in seqs], first_seq=seqs[0], replay=replay
    )
    return message


def test_newest_lets_each_sample_through_once() -> None:
    newest = Newest()
    assert newest.admit("a", 5, 10)
    assert not newest.admit("a", 5, 10)  # the copy through the other subscription
    assert not newest.admit("a", 4, 9)  # older
    assert newest.admit("a", 5, 11)
    assert newest.admit("a", 6, 12)  # reconnected: new epoch, seqs go on
    assert newest.admit("a", 7, 1)  # state lost: new epoch, seqs start again
    assert newest.admit("b", 1, 1)  # per agent


async def _drain(feed_queue: asyncio.Queue[LiveSample]) -> list[int]:
    await asyncio.sleep(0.01)  # the network thread's calls land on the loop
    seqs = []
    while not feed_queue.empty():
        seqs.append(feed_queue.get_nowait().sample.seq)
    return seqs


def test_both_ways_in_one_copy_each_and_the_subscription_follows_the_followers() -> None:
    async def main() -> None:
        link = FakeLink()
        feed = LiveFeed(TOPICS, link)
        feed.start()
        with feed.watching() as one, feed.watching() as two:
            one.follow(["a1"])
            two.follow(["a1", "a1"])
            assert link.live == [TOPICS.metrics("a1")]  # one subscription for both
            for seq in (1, 2, 3):  # the share got 1 and 3, the plain subscription all
                feed.from_plain(plain_message("a1", 9, [seq]))
                if seq != 2:
                    feed.from_share("a1", 9, [sample(seq)], 0.0)
            feed.from_plain(plain_message("a1", 9, [1], replay=True))  # replays: not live
            feed.from_share("a2", 9, [sample(7)], 0.0)  # nobody follows a2
            assert await _drain(one.queue) == [1, 2, 3]
            assert await _drain(two.queue) == [1, 2, 3]
            data = LiveSample("a1", 9, sample(4), 5.0).data()
            assert (data["seq"], data["epoch"]) == (4, 9)
            assert (data["values"]["cpu"], data["values"]["rx_ts"]) == (1.0, 5.0)
            one.unfollow(["a1"])
            assert link.live == [TOPICS.metrics("a1")]  # two still follows
        assert link.live == []  # the last follower left
        assert feed.followed() == set()

    asyncio.run(main())


def test_beyond_the_limit_agents_get_the_share_only_until_a_slot_frees() -> None:
    async def main() -> None:
        link = FakeLink()
        feed = LiveFeed(TOPICS, link, max_agents=2)
        feed.start()
        with feed.watching() as watcher:
            watcher.follow(["a1", "a2", "a3"])
            assert link.live == [TOPICS.metrics("a1"), TOPICS.metrics("a2")]
            assert feed.share_only == {"a3"}
            feed.from_share("a3", 1, [sample(1)], 0.0)  # still live, from the share
            assert await _drain(watcher.queue) == [1]
            watcher.unfollow(["a1"])
            assert link.live == [TOPICS.metrics("a2"), TOPICS.metrics("a3")]
            assert feed.share_only == set()
        assert link.live == []

    asyncio.run(main())


def test_a_plain_subscription_nobody_follows_is_dropped() -> None:
    async def main() -> None:
        link = FakeLink()
        link.live.append(TOPICS.metrics("old"))  # kept by the broker's session
        feed = LiveFeed(TOPICS, link)
        feed.start()
        feed.from_plain(plain_message("old", 1, [1]))
        feed.from_plain(plain_message("old", 1, [2]))  # UNSUBACK not back yet: once only
        await asyncio.sleep(0.01)
        assert link.live == []

    asyncio.run(main())


@pytest.mark.parametrize("topic", ["arete/status/a1", "nope/metrics/a1"])
def test_a_plain_message_on_another_topic_is_ignored(topic: str) -> None:
    feed = LiveFeed(TOPICS, FakeLink())
    message = mqtt.MQTTMessage(topic=topic.encode())
    feed.from_plain(message)  # no loop needed: nothing scheduled
    assert feed.plain_messages == 0


def test_an_unknown_agent_gets_no_plain_subscription() -> None:
    async def main() -> None:
        link = FakeLink()
        feed = LiveFeed(TOPICS, link, max_agents=1, known=lambda agent_id: agent_id == "real")
        feed.start()
        with feed.watching() as watcher:
            watcher.follow(["made-up", "not/an/id", "real"])
            assert link.live == [TOPICS.metrics("real")]  # the made-up ids used no slot
            assert feed.share_only == set()

    asyncio.run(main())
