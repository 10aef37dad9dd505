"""The control schedule's rules on their own: no race, no clock, no threads."""

import pytest

from game.controls import MAX_PENDING_PER_CLIENT, MAX_SCHEDULE_AHEAD, ControlSchedule, GameError

LEFT = (False, False, True, False)
RIGHT = (False, False, False, True)


def test_commands_apply_at_their_frame_in_the_order_received():
    s = ControlSchedule()
    first = s.submit(LEFT, 5, now=0)
    second = s.submit(RIGHT, 5, now=1)
    s.submit(LEFT, 6, now=1)
    assert list(s.apply(4)) == [] and s.pending == 3
    assert [c.id for c in s.apply(5)] == [first.id, second.id]
    assert s.get(second.id).to_dict()["status"] == "applied" and s.get(second.id).applied_frame == 5
    assert s.pending == 1


@pytest.mark.parametrize(("frame", "status", "words"), [
    (9, 409, "in the past"),
    (10 + MAX_SCHEDULE_AHEAD + 1, 422, "too far ahead"),
])
def test_frames_outside_the_window_are_refused(frame, status, words):
    s = ControlSchedule()
    s.submit(LEFT, 10 + MAX_SCHEDULE_AHEAD, now=10)  # the last frame accepted
    with pytest.raises(GameError, match=words) as err:
        s.submit(LEFT, frame, now=10)
    assert err.value.status == status and s.pending == 1


def test_a_flooding_client_is_refused_and_freed_as_its_commands_apply():
    s = ControlSchedule()
    for i in range(MAX_PENDING_PER_CLIENT):
        s.submit(LEFT, 1 + i % 2, now=0, client="10.0.0.1")
    with pytest.raises(GameError, match="from 10.0.0.1") as err:
        s.submit(LEFT, 1, now=0, client="10.0.0.1")
    assert err.value.status == 429
    s.submit(RIGHT, 1, now=0, client="10.0.0.2")  # everyone else keeps driving
    list(s.apply(1))
    s.submit(LEFT, 2, now=1, client="10.0.0.1")  # applied commands no longer count against it


def test_a_reset_cancels_what_is_pending_and_frees_every_client():
    s = ControlSchedule()
    cmds = [s.submit(LEFT, 3, now=0, client="a") for _ in range(MAX_PENDING_PER_CLIENT)]
    assert s.cancel_all() == MAX_PENDING_PER_CLIENT and s.pending == 0
    assert all(s.get(c.id).to_dict()["status"] == "cancelled" for c in cmds)
    assert list(s.apply(3)) == []
    s.submit(LEFT, 3, now=0, client="a")


def test_unknown_command_ids_are_404():
    with pytest.raises(GameError, match="unknown command id 7") as err:
        ControlSchedule().get(7)
    assert err.value.status == 404


def test_many_addresses_scheduling_far_ahead_leave_room_for_the_others():
    """10,000 clients (one command each, a minute ahead) fill only the far-ahead share of the schedule:
    a driver sending controls for the next frames is still accepted."""
    from game.controls import MAX_PENDING, MAX_PENDING_FAR

    s = ControlSchedule()
    codes = []
    for i in range(MAX_PENDING):
        try:
            s.submit(LEFT, 1499, now=0, client=f"10.0.{i // 256}.{i % 256}")
            codes.append(200)
        except GameError as exc:
            codes.append(exc.status)
    assert codes.count(200) == MAX_PENDING_FAR and set(codes[MAX_PENDING_FAR:]) == {429}
    for frame in (0, 1, 25):  # the next second is never crowded out by commands for later
        assert s.submit(LEFT, frame, now=0, client="driver").frame == frame
    assert s.pending <= MAX_PENDING
