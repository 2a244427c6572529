"""Is the grid still talking to us? Link-loss detection and the fallback it triggers.

    up ──(nothing heard for link_loss_s)──► lost          fallback on
    lost ──(heartbeat or command heard)──► up              fallback stays on
    fallback ──(a fresh command accepted while up)──► off

Only authenticated or well-formed messages count as hearing from the grid (accepted commands,
duplicates of accepted commands, valid heartbeats); rejected junk does not keep the link alive.
"""

from __future__ import annotations

from dataclasses import dataclass

LINK_LOST = "link_lost"
LINK_RESTORED = "link_restored"
FALLBACK_ENDED = "fallback_ended"


@dataclass
class LinkWatch:
    link_loss_s: float
    last_heard_s: float
    lost: bool = False
    fallback: bool = False

    def silent_s(self, now_s: float) -> float:
        return max(0.0, now_s - self.last_heard_s)

    def check(self, now_s: float) -> str | None:
        """LINK_LOST when the silence has just passed `link_loss_s`."""
        if not self.lost and now_s - self.last_heard_s > self.link_loss_s:
            self.lost = True
            self.fallback = True
            return LINK_LOST
        return None

    def heard(self, now_s: float) -> str | None:
        """A message from the grid; LINK_RESTORED if the link was lost."""
        self.last_heard_s = max(self.last_heard_s, now_s)
        if self.lost:
            self.lost = False
            return LINK_RESTORED
        return None

    def command_accepted(self, now_s: float) -> list[str]:
        """A fresh command: the link is up and the fallback ends."""
        out = [e for e in (self.heard(now_s),) if e is not None]
        if self.fallback:
            self.fallback = False
            out.append(FALLBACK_ENDED)
        return out
