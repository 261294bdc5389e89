"""The limits of a dataset version's settings, in one place: the model, the service, the API's serializer and the
page's form all read them from here. The test ratio is strictly between 0 and 1 (a database CHECK)."""

MIN_RATINGS_MIN, MIN_RATINGS_MAX, MIN_RATINGS_DEFAULT = 1, 1000, 1  # ratings an image's consensus needs
TEST_RATIO_DEFAULT = 0.1
