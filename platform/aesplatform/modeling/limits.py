"""The limits of a pre-scoring run's settings, in one place: the service, the API's serializer and the page's form
all read them from here."""

MAX_TILES_MIN, MAX_TILES_MAX = 1, 12  # 12 tiles + thumbnail: the reference's protocol
BATCH_SIZE_MIN, BATCH_SIZE_MAX, BATCH_SIZE_DEFAULT = 1, 1024, 32  # images per batch
