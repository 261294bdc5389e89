"""The limits of a filter run's settings, in one place: the service, the API's serializer and the page's form all
read them from here."""

BATCH_SIZE_MIN, BATCH_SIZE_MAX, BATCH_SIZE_DEFAULT = 1, 1024, 64  # images per CLIP batch
REVIEW_BATCH_SIZE_MIN, REVIEW_BATCH_SIZE_MAX, REVIEW_BATCH_SIZE_DEFAULT = 1, 500, 48  # images per review batch
SELECTION_MAX_IMAGES = 50_000  # images in one saved selection (a lasso on the embedding map)
