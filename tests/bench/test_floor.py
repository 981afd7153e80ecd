"""The token-operation comparison times working operations, and divides by the floor round by round."""

from __future__ import annotations

import pytest
from bench.floor import ALGORITHMS, DEFAULT_CONTENDERS, FloorSettings, floor_ops, make_material, measure_algorithm
from bench.keyturn_peers import keyturn_ops


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_contender_signs_and_verifies_the_same_token_content(algorithm: str) -> None:
    """A contender whose closure raised would time an error path; each must succeed as built."""
    material = make_material(algorithm)
    contenders = {**DEFAULT_CONTENDERS, "keyturn": keyturn_ops}
    built = {name: ops for name, factory in contenders.items() if (ops := factory(material)) is not None}
    assert {"floor", "joserfc", "keyturn"} <= built.keys()
    for ops in built.values():
        ops.sign()
        ops.verify()


def test_keyturns_verify_runs_every_claim_check_on_a_real_token() -> None:
    material = make_material("ES256")
    ops = keyturn_ops(material)
    assert ops is not None
    token = ops.sign()
    assert isinstance(token, str)
    assert token.count(".") == 2
    claims = ops.verify()
    assert getattr(claims, "subject", None) == "507f1f77bcf86cd799439011"


def test_the_floor_verifies_a_real_signature() -> None:
    material = make_material("EdDSA")
    ops = floor_ops(material)
    signature = ops.sign()
    assert isinstance(signature, bytes)
    assert len(signature) == 64
    ops.verify()


def test_each_contender_is_divided_by_the_floor_of_its_own_round() -> None:
    settings = FloorSettings(sample_s=0.002, rounds=3)
    outcomes = measure_algorithm("HS256", {"floor": floor_ops, "keyturn": keyturn_ops}, settings)
    assert {(o.operation, o.contender) for o in outcomes} == {
        (operation, contender) for operation in ("sign", "verify") for contender in ("floor", "keyturn")
    }
    for outcome in outcomes:
        assert len(outcome.ops_per_s) == 3
        if outcome.contender == "floor":
            assert outcome.ratio.median == pytest.approx(1.0)
        else:
            # keyturn does the floor's HMAC plus base64, JSON and every claim rule: slower, never faster.
            assert 0 < outcome.ratio.high < 1
