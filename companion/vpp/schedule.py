"""VPP's keep-ratio schedule: where tokens are selected and the keep ratio ρ of each block."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeepRatioSchedule:
    """Where tokens are selected and the keep ratio ρ aimed at (fraction of all N tokens).

    Blocks before ``map_block`` run dense; Map-SM keeps ``map_ratio`` (ρ_map) from ``map_block``
    on; the selective module at ``sm_blocks[i]`` aims at ``sm_ratios[i]`` (ρ_l) and its decision
    holds until the next selection. ``prior_block`` is the block whose output (with the mask in
    force there) is the next frame's deep prior X_6^{t−1}. ``map_block=None`` gives the
    later-layers-only (SViT-style) baseline.
    """

    depth: int = 12
    map_block: int | None = 1
    map_ratio: float = 0.7
    sm_blocks: tuple[int, ...] = (3, 6, 9)
    sm_ratios: tuple[float, ...] = (0.56, 0.448, 0.358)
    prior_block: int = 5
    smoothing: int = 3

    def __post_init__(self):
        ratios = ((self.map_ratio,) if self.map_block is not None else ()) + tuple(self.sm_ratios)
        for r in ratios:
            if not 0.0 < r <= 1.0:
                raise ValueError(f"Keep ratios must lie in (0, 1], got {r}: a ratio of 0 would "
                                 "drop every token, above 1 keeps more tokens than exist.")
        if any(b > a for a, b in zip(ratios, ratios[1:], strict=False)):
            raise ValueError(f"Keep ratios must not increase with depth (a pruned token stays "
                             f"pruned), got {ratios}.")
        if len(self.sm_blocks) != len(self.sm_ratios):
            raise ValueError(f"sm_blocks {self.sm_blocks} and sm_ratios {self.sm_ratios} must have "
                             "the same length.")
        points = ((self.map_block,) if self.map_block is not None else ()) + tuple(self.sm_blocks)
        if list(points) != sorted(set(points)) or (points and not points[0] >= 1) or \
                (points and points[-1] >= self.depth):
            raise ValueError(f"Selection blocks {points} must be increasing, after block 0 and "
                             f"below depth={self.depth}.")
        if self.map_block is not None and not self.map_block <= self.prior_block < self.depth:
            raise ValueError(f"prior_block={self.prior_block} must lie in [map_block, depth).")
        if self.smoothing < 1 or self.smoothing % 2 == 0:
            raise ValueError(f"smoothing must be an odd kernel size, got {self.smoothing}.")

    @classmethod
    def paper(cls, pkr: float = 0.55, depth: int = 12) -> KeepRatioSchedule:
        """The paper's two operating points: PKR 0.55 (ρ_map 0.7, ×0.8) or 0.4 (ρ_map 0.6, ×0.7).

        Block 0 dense, Map-SM at block 1, selective modules at blocks 3, 6, 9, prior from block 5;
        ρ_l = ρ_map·γ^l. The 0.4 point uses its own ratios (the released Small config repeats the
        0.55 ones and cannot reach 0.4).
        """
        presets = {0.55: (0.7, 0.8), 0.4: (0.6, 0.7)}
        if pkr not in presets:
            raise ValueError(f"The paper's schedules are pkr=0.55 or pkr=0.4, got {pkr}; build "
                             "KeepRatioSchedule(...) yourself for other ratios.")
        rho, gamma = presets[pkr]
        return cls(depth=depth, map_ratio=rho, sm_ratios=tuple(rho * gamma ** k for k in (1, 2, 3)))

    @classmethod
    def later_only(cls, target_pkr: float, depth: int = 12, sm_blocks=(3, 6, 9),
                   decay: float = 0.7) -> KeepRatioSchedule:
        """SViT-style schedule: dense until ``sm_blocks[0]``, ρ_l = a·decay^l with a set so that
        the mean keep ratio over all blocks equals ``target_pkr``."""
        spans = [b - a for a, b in zip(sm_blocks, [*sm_blocks[1:], depth], strict=True)]
        weight = sum(s * decay ** k for k, s in enumerate(spans))
        a = (target_pkr * depth - sm_blocks[0]) / weight
        if not 0.0 < a <= 1.0:
            raise ValueError(f"target_pkr={target_pkr} cannot be reached with dense blocks before "
                             f"{sm_blocks[0]} and decay {decay}.")
        return cls(depth=depth, map_block=None, sm_blocks=tuple(sm_blocks),
                   sm_ratios=tuple(a * decay ** k for k in range(len(sm_blocks))))

    def per_block(self, has_prior: bool = True) -> tuple[float, ...]:
        """Target keep ratio of each block (1.0 = dense); without a prior Map-SM is off."""
        out, current = [], 1.0
        for b in range(self.depth):
            if b == self.map_block and has_prior:
                current = self.map_ratio
            if b in self.sm_blocks:
                current = self.sm_ratios[self.sm_blocks.index(b)]
            out.append(current)
        return tuple(out)

    @property
    def pkr(self) -> float:
        """Target patch keep ratio: mean over blocks of the kept fraction (with a prior)."""
        return sum(self.per_block()) / self.depth

    def scaled(self, factor: float) -> KeepRatioSchedule:
        """The same schedule with every ratio multiplied by ``factor`` (capped at 1)."""
        return KeepRatioSchedule(self.depth, self.map_block, min(1.0, self.map_ratio * factor),
                                 self.sm_blocks, tuple(min(1.0, r * factor) for r in self.sm_ratios),
                                 self.prior_block, self.smoothing)
