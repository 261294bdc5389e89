from django.urls import path

from . import views

app_name = "ui"

# Pages of the base layout (annotator_ui part 8): home, annotator pages, curator list pages.
urlpatterns = [
    path("", views.HomeView.as_view(), name="home"),
    path("annotate/", views.AnnotateView.as_view(), name="annotate"),
    path("my-work/", views.MyWorkView.as_view(), name="my_work"),
    path("images/", views.ImageGalleryView.as_view(), name="images"),
    path("filtering/", views.FilterRunListView.as_view(), name="filter_runs"),
    path("campaigns/", views.CampaignListView.as_view(), name="campaigns"),
    path("datasets/", views.DatasetListView.as_view(), name="datasets"),
    path("models/", views.ModelListView.as_view(), name="models"),
]
