"""`inv logs --follow` ends on Ctrl-C and on SIGTERM alike, also when started with SIGINT ignored (a shell's
background job, as CI launchers start it): the signal becomes KeyboardInterrupt inside `stoppable`, and the
previous handlers are back afterwards."""
import os
import signal

import pytest

from iosops.day2.logs import stoppable


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_interrupts_a_follow_even_when_sigint_was_ignored(sig):
    old_int, old_term = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(KeyboardInterrupt):
            with stoppable():
                os.kill(os.getpid(), sig)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == old_term
    finally:
        signal.signal(signal.SIGINT, old_int)
