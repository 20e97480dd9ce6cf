import torch

from aoideft.baselines import template_diff_scores


def test_template_diff_flags_a_blob_and_ignores_single_pixel_noise():
    golden = torch.full((3, 2, 3, 16, 16), 100, dtype=torch.uint8)
    test = golden.clone()
    test[1, 0, :, 6:10, 6:10] = 220  # a 4x4 solder blob on light 0
    test[2, 1, :, 3, 3] = 255  # one hot pixel: blurred away
    scores = template_diff_scores(golden, test, blur=5)
    assert scores[0] == 0
    assert scores[1] > 0.3
    assert 0 < scores[2] < 0.1
