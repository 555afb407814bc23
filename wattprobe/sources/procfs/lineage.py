"""The time of exited descendants, credited to the live process that reaped them.

The kernel adds a reaped child's whole time (its own and its reaped descendants') to the parent's
cutime+cstime. The increase of those, less what was already counted for the children that vanished
(their last-seen cumulative time), is the parent's; `_settle` lines the two up at each scan. The
reader (`scan.ProcfsReader`) keeps the tasks; this part keeps their lineage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattprobe.sources.procfs.files import TICK_NS

if TYPE_CHECKING:
    from wattprobe.sources.procfs.scan import _Task

# Rounds of "a parent's children's time moved: did one of its known children vanish?" per scan.
_SETTLE_ROUNDS = 4


class Lineage:
    """The exited-descendant part of the procfs reader: which process reaped which, and the time owed."""

    _tasks: dict[str, _Task]
    _kids: dict[int, dict[int, _Task]]
    _exited: dict[int, int]
    _reaped: list[_Task]
    _scan: int

    def _refresh(self, task: _Task, sched_ns: int) -> bool:
        raise NotImplementedError  # the scan's

    def _alive(self, task: _Task) -> bool:
        raise NotImplementedError  # the scan's

    def _forget(self, task: _Task) -> None:
        raise NotImplementedError  # the scan's

    def _credit(self, task: _Task, cticks: int) -> None:
        """Its reaped children's time grew: credit what is not owed for children we counted already."""
        if task.credit_scan != self._scan:
            task.credit_scan, task.scan_exited = self._scan, task.exited_ns
        gain = (cticks - task.cticks) * TICK_NS - task.owed
        if gain >= 0:
            task.exited_ns += gain
            task.owed = 0
        else:  # cutime and cstime are rounded down to ticks: carried, given back when they catch up
            task.owed = -gain
        task.cticks = cticks
        self._publish(task)
        self._reaped.append(task)

    def _owe(self, task: _Task, ns: int) -> None:
        """A child counted up to `ns` was reaped into `task`: take it back from this scan's credit,
        if any (the reap may be in it), and owe the rest against the next increase of its cticks."""
        back = min(ns, task.exited_ns - task.scan_exited) if task.credit_scan == self._scan else 0
        task.exited_ns -= back
        task.owed += ns - back
        self._publish(task)

    def _publish(self, task: _Task) -> None:
        task.cpu_ns = task.own_ns + task.exited_ns
        if task.exited_ns:
            self._exited[task.key] = task.exited_ns
        else:
            self._exited.pop(task.key, None)

    def _settle(self, gone: list[_Task]) -> None:
        """Line up vanished children with the cticks of the parents that reaped them.

        A reaped child's counted time is owed by its reaper: its recorded parent, or, if that
        vanished too in this scan, that one's reaper (a parent that reaped it and was reaped in
        turn). The parent's cticks may show the reap in this scan's read or only in a later one:
        `_owe` takes back from this scan's credit and owes the rest, and the reaper is read again
        after the child was found gone, so its last read in the scan includes the reap. A parent
        whose cticks moved may have reaped a child we read alive earlier in the scan: its known
        children are checked. Children of a vanished process were reparented (to init or the
        nearest subreaper): their stat is read again for their new parent.
        """
        handled: set[int] = set()
        orphans: list[_Task] = []
        recheck: dict[int, _Task] = {}

        def vanish(task: _Task) -> None:
            if task.key in handled:
                return
            handled.add(task.key)
            gone.append(task)
            reaper = self._reaper(task, handled)
            if reaper is not None:
                self._owe(reaper, task.accounted())
                recheck[reaper.key] = reaper
            orphans.extend(self._kids.get(task.pid, {}).values())

        found, gone[:] = list(gone), []
        for task in found:
            vanish(task)
        for _ in range(_SETTLE_ROUNDS):
            parents, self._reaped = self._reaped, []
            for parent in parents:
                if parent.key in handled:
                    continue
                for kid in list(self._kids.get(parent.pid, {}).values()):
                    if kid.key not in handled and kid.start >= parent.start and not self._alive(kid):
                        vanish(kid)
            if not recheck:
                break
            again, recheck = list(recheck.values()), {}
            for reaper in again:
                if reaper.key not in handled and not self._refresh(reaper, -1):
                    vanish(reaper)
        self._reaped = []
        for kid in orphans:
            if kid.key not in handled and not self._refresh(kid, -1):
                vanish(kid)  # reaped by its new parent, or by the old one's: see _reaper
        for task in gone:
            if self._tasks.get(str(task.pid)) is task:
                del self._tasks[str(task.pid)]
            self._forget(task)

    def _reaper(self, task: _Task, handled: set[int]) -> _Task | None:
        """The live process whose cticks got `task`'s time: its parent, or the nearest live ancestor
        through parents that vanished in the same scan; None when it is not one we track."""
        ppid, start = task.ppid, task.start
        for _ in range(64):
            parent = self._tasks.get(str(ppid))
            if parent is None or parent.start > start:  # untracked, or a newer process on that pid
                return None
            if parent.key not in handled:
                return parent
            ppid, start = parent.ppid, parent.start
        return None

    def _adopt(self, task: _Task, ppid: int) -> None:
        old = self._kids.get(task.ppid)
        if old is not None:
            old.pop(task.key, None)
            if not old:
                del self._kids[task.ppid]
        task.ppid = ppid
        self._kids.setdefault(ppid, {})[task.key] = task

    def descendants(self, pid: int) -> set[int]:
        """The pids of the live processes below `pid` (its children, theirs, ...) at the last scan."""
        found: set[int] = set()
        stack = [pid]
        while stack:
            for task in self._kids.get(stack.pop(), {}).values():
                if task.pid not in found:
                    found.add(task.pid)
                    stack.append(task.pid)
        return found
