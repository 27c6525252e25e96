"""The timer heap with lazy deletion on its own: moved and cancelled deadlines never fire,
ties fire in push order, pushes during a walk are seen."""

from __future__ import annotations

from ustcp.tcp.timers import TimerHeap


def test_a_moved_deadline_fires_once_at_its_new_time_and_a_cancelled_one_never() -> None:
    deadline = {"a": 5.0, "b": 3.0, "c": 4.0}
    heap: TimerHeap[str] = TimerHeap()
    for name, when in deadline.items():
        heap.push(when, name)
    deadline["a"] = 1.0  # moved earlier: a new entry, the old one goes stale
    heap.push(1.0, "a")
    deadline["b"] = 9.0  # moved later: the entry at 3.0 goes stale
    heap.push(9.0, "b")
    del deadline["c"]  # cancelled

    def live(name: str, when: float) -> bool:
        return deadline.get(name) == when

    assert heap.next_deadline(live) == 1.0
    assert list(heap.pop_due(6.0, live)) == ["a"]
    assert heap.next_deadline(live) == 9.0
    assert len(heap) == 1  # the stale entries were dropped on the way
    assert list(heap.pop_due(9.0, live)) == ["b"]
    assert heap.next_deadline(live) is None


def test_ties_fire_in_push_order_and_a_push_during_the_walk_is_seen() -> None:
    heap: TimerHeap[int] = TimerHeap()
    for i in range(5):
        heap.push(1.0, i)
    seen = []
    for item in heap.pop_due(2.0, lambda item, when: True):
        seen.append(item)
        if item == 0:
            heap.push(1.5, 10)  # due in this walk
            heap.push(3.0, 11)  # not yet
    assert seen == [0, 1, 2, 3, 4, 10]
    assert heap.next_deadline(lambda item, when: True) == 3.0
    heap.clear()
    assert heap.next_deadline(lambda item, when: True) is None
