"""Numbers and images for people."""

from PIL import Image

from mmneurons.plugins.ui.format import enlarge, fmt


def test_small_images_are_enlarged_without_smoothing():
    image = Image.new("RGB", (64, 64))
    image.putpixel((0, 0), (255, 0, 0))
    big = enlarge(image, 192)
    assert big.size == (192, 192) and big.getpixel((2, 2)) == (255, 0, 0) and big.getpixel((3, 3)) == (0, 0, 0)
    assert enlarge(Image.new("RGB", (300, 300)), 192).size == (300, 300)
    assert fmt(2.71828) == "2.718" and fmt(12345) == "12,345" and fmt(float("nan")) == "n/a" and fmt(True) == "True"
